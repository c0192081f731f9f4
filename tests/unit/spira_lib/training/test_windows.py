"""Window indexes: random crops, memory-mapped clips, prefetched batches."""
from __future__ import annotations

import numpy as np

from spira_lib.model import n_windows


def test_random_crops_take_k_windows_per_clip_inside_each_clip():
    from spira_lib.training.windows import index_windows as _index_windows

    rng = np.random.default_rng(0)
    feats = [np.random.default_rng(i).normal(size=(t, 4)).astype(np.float32) for i, t in enumerate([90, 200, 80])]
    idx = _index_windows(feats, 80, 40, "windowed", 4, crops=3, rng=rng)
    assert len(idx.starts) == 9 and list(idx.clip) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for start, clip in zip(idx.starts, idx.clip):
        assert 0 <= start <= feats[clip].shape[0] - 80  # never runs past its clip
    # not only the 40-frame grid: offsets vary with the rng
    assert len({int(s) for s, c in zip(idx.starts, idx.clip) if c == 1}) > 1
    batch = idx.gather(np.array([3, 8]), 80)
    np.testing.assert_array_equal(batch[0], feats[1][idx.starts[3] : idx.starts[3] + 80])
    np.testing.assert_array_equal(batch[1], feats[2][idx.starts[8] : idx.starts[8] + 80])
    grid = _index_windows(feats, 80, 40, "windowed", 4)
    assert len(grid.starts) == sum(n_windows(f.shape[0], 80, 40) for f in feats)


def test_window_index_streams_from_memory_maps(tmp_path):
    """Clips are referenced, not copied: training memory does not grow with the dataset."""
    from spira_lib.training.windows import index_windows as _index_windows

    path = tmp_path / "clip.npy"
    np.save(path, np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32))
    opened = []

    def load():
        opened.append(np.load(path, mmap_mode="r"))
        return opened[-1]

    idx = _index_windows([load, load], 80, 40, "windowed", 4)
    assert all(callable(c) for c in idx.clips)  # nothing held open between batches
    batch = idx.gather(np.array([0, 1, len(idx.starts) - 1]), 80)
    np.testing.assert_array_equal(batch[0], np.load(path)[:80])
    assert len(opened) == 2 + 2  # once per clip to index, then once per clip in the batch


def test_prefetched_batches_equal_a_plain_loop():
    from spira_lib.training.windows import index_windows as _index_windows, prefetched as _prefetched

    feats = [np.random.default_rng(i).normal(size=(150 + 10 * i, 4)).astype(np.float32) for i in range(5)]
    idx = _index_windows(feats, 80, 40, "windowed", 4)
    order = np.random.default_rng(1).permutation(len(idx.starts))
    got = list(_prefetched(idx, order, 3, 80))
    assert [list(r) for r, _ in got] == [list(order[lo : lo + 3]) for lo in range(0, len(order), 3)]
    for rows, batch in got:
        np.testing.assert_array_equal(batch, idx.gather(rows, 80))
    assert list(_prefetched(idx, order[:0], 3, 80)) == []
