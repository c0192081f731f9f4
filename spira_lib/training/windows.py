"""Windows of clips as (clip, start) index arrays, gathered per batch.

Memory and speed: a batch is gathered from the clips' own (memory-mapped)
arrays, one batch ahead on a background thread, so memory and open files stay
flat with dataset size and reading overlaps with the model step.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import torch

from spira_lib.model import n_windows, pad_or_crop

if TYPE_CHECKING:
    from spira_lib.training.sources import ClipSource


ClipLoader = Callable[[], np.ndarray]


@dataclass
class WindowIndex:
    """Windows of a set of clips: (clip, start) pairs, read per batch.

    A clip is held as a loader (re-opened for each batch that needs it) or, for
    short clips that had to be padded, as a small array. Nothing from the
    feature store stays open between batches: memory and open files stay flat
    however many clips a dataset has (a memory map holds a file descriptor).
    """

    clips: list[np.ndarray | ClipLoader]
    starts: np.ndarray  # [N] int64: first frame of each window within its clip
    clip: np.ndarray  # [N] int64: which clip (position in the input list) each window belongs to
    n_clips: int
    n_features: int

    def gather(self, rows: np.ndarray, n_frames: int) -> np.ndarray:
        """Windows ``rows`` as a fresh ``[len(rows), n_frames, F]`` array (each clip opened once)."""
        out = np.empty((len(rows), n_frames, self.n_features), dtype=np.float32)
        by_clip: dict[int, list[int]] = {}
        for j, r in enumerate(rows):
            by_clip.setdefault(int(self.clip[r]), []).append(j)
        for c, js in by_clip.items():
            held = self.clips[c]
            arr = held() if callable(held) else held
            for j in js:
                s = int(self.starts[rows[j]])
                out[j] = arr[s : s + n_frames]
            del arr  # closes a memory map before the next clip is opened
        return out


def clip_loader(source: "ClipSource", i: int, variant: int) -> ClipLoader:
    return functools.partial(source.features, i, variant)


def index_windows(
    feats: Sequence[np.ndarray | ClipLoader],
    n_frames: int,
    step: int,
    mode: str,
    n_features: int,
    *,
    crops: int = 0,
    rng: np.random.Generator | None = None,
) -> WindowIndex:
    """Index the windows of ``feats`` (arrays, or loaders returning arrays): every
    window on the ``step`` grid, or, with ``crops > 0`` (training only), that many
    windows per clip at random frame offsets."""
    kept: list[np.ndarray | ClipLoader] = []
    starts: list[np.ndarray] = []
    clips: list[np.ndarray] = []
    for i, item in enumerate(feats):
        f = np.asarray(item() if callable(item) else item)
        if f.ndim != 2 or f.shape[1] != n_features:
            raise ValueError(f"clip {i}: features must be [frames, {n_features}], got shape {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError(f"clip {i}: features contain NaN or infinite values")
        length = f.shape[0]
        if mode == "padded" or length < n_frames:
            # Short clips get zero-padded into one window instead of crashing.
            kept.append(pad_or_crop(f.astype(np.float32, copy=False), n_frames))
            length = n_frames
        elif callable(item):
            kept.append(item)
        else:
            kept.append(f if f.dtype == np.float32 else f.astype(np.float32))
        del f
        if mode != "padded" and crops > 0 and rng is not None:
            k = crops
            starts.append(rng.integers(0, length - n_frames + 1, size=k).astype(np.int64))
        else:
            k = 1 if mode == "padded" else n_windows(length, n_frames, step)
            starts.append(np.arange(k, dtype=np.int64) * step)
        clips.append(np.full(k, i, dtype=np.int64))
    if not kept:
        return WindowIndex([], np.zeros(0, np.int64), np.zeros(0, np.int64), 0, n_features)
    return WindowIndex(kept, np.concatenate(starts), np.concatenate(clips), len(kept), n_features)


def prefetched(index: WindowIndex, order: np.ndarray, batch_size: int, n_frames: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (rows, windows) batches in ``order``, gathering the next batch on a
    background thread while the current one trains.

    Reading windows (memory maps, possibly cold pages) overlaps with the model
    step, which is what keeps a GPU fed; batches and their order are exactly
    those of a plain loop, so results do not change.
    """
    chunks = [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="spira-prefetch") as pool:
        pending = pool.submit(index.gather, chunks[0], n_frames)
        for k, rows in enumerate(chunks):
            batch = pending.result()
            if k + 1 < len(chunks):
                pending = pool.submit(index.gather, chunks[k + 1], n_frames)
            yield rows, batch


def to_device(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(batch)
    if device.type == "cuda":
        # Pinned memory lets the host->GPU copy run asynchronously with compute.
        return t.pin_memory().to(device, non_blocking=True)
    return t
