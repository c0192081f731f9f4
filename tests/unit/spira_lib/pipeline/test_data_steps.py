"""The data steps honour the configured limits (the snapshot refuses oversized files from the listing)."""
from __future__ import annotations

import uuid

import polars as pl

from spira_lib.pipeline import RunSpec
from spira_lib.pipeline import layout as L
from spira_lib.pipeline.data_steps import snapshot_step
from tests.unit.spira_lib.scoring._helpers import wav


def _spec(max_file_mb: float) -> RunSpec:
    name = uuid.uuid4().hex[:8]
    spec = RunSpec.build(f"memory://d-{name}", f"memory://r-{name}", overrides={"audio.max_file_mb": max_file_mb})
    data = spec.workspace().data
    data.put("a.wav", wav(1, seconds=2.5))  # ~80 KB of 16-bit PCM
    data.put("metadata.csv", b"file_path,class,sexo,idade,nivel_falta_de_ar\na.wav,1,F,50,2\n")
    return spec


def test_the_configured_file_size_limit_reaches_the_snapshot():
    for limit, code in ((0.01, "too_large"), (1.0, None)):
        spec = _spec(limit)
        snap = snapshot_step(spec)
        manifest = L.get_frame(spec.workspace().store, snap.manifest_key)
        assert manifest["problem_code"].to_list() == [code], (limit, manifest.select("problem_code", "problem").to_dicts())
        assert isinstance(manifest, pl.DataFrame)


def test_a_manifest_left_by_older_code_under_the_same_digest_is_replaced():
    spec = _spec(1.0)
    first = snapshot_step(spec)
    store = spec.workspace().store
    old = L.get_frame(store, first.manifest_key).drop("problem_code")  # what an earlier format looked like
    store.put(first.manifest_key, _parquet(old))
    again = snapshot_step(spec)
    assert again.digest == first.digest
    assert "problem_code" in L.get_frame(store, again.manifest_key).columns


def _parquet(df: pl.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()
