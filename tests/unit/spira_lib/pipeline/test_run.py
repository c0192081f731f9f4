"""The whole core pipeline without orchestration: `spira train` and friends.

One real (small) training per module, through the CLI in a subprocess so the
import audit sees exactly what `spira train` loads.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pytest
import soundfile as sf
import torch

from spira_lib.bootstrap import open_registry
from spira_lib.checkpoint import load_checkpoint
from spira_lib.dataset.manifest import manifest_from_bytes
from spira_lib.inference import Predictor
from spira_lib.monitoring import ReferenceProfile
from spira_lib.pipeline import PipelineError, RunSpec, evaluate_dataset, run_pipeline

pytestmark = pytest.mark.slow

AUDIT = textwrap.dedent(
    """
    import json, sys
    from spira_cli.main import app
    try:
        app(sys.argv[1:], standalone_mode=False)
    finally:
        heavy = sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'prefect_aws', 'boto3', 'botocore'})
        print('LOADED ' + json.dumps(heavy))
    """
)


def _sets(overrides: dict) -> list[str]:
    out = []
    for k, v in overrides.items():
        out += ["--set", f"{k}={v}"]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_dataset, fast_overrides):
    reg = tmp_path_factory.mktemp("reg")
    cmd = [sys.executable, "-c", AUDIT, "train", "--data", str(demo_dataset), "--registry", str(reg), "--json", *_sets(fast_overrides)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    return {"registry": reg, "json": json.loads(lines[-2]), "loaded": json.loads(lines[-1].removeprefix("LOADED ")), "stderr": proc.stderr}


def test_train_json_is_the_last_line_with_model_version_metrics(trained):
    out = trained["json"]
    assert out["model"] == "spira" and out["version"] == 1 and out["skipped"] is False
    assert set(out["metrics"]) >= {"roc_auc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity", "n_files", "shortcut_accuracy"}
    assert out["metrics"]["n_files"] > 0


def test_spira_train_loads_no_prefect_or_boto(trained):
    assert trained["loaded"] == []


def test_registered_checkpoint_describes_itself(trained, demo_dataset):
    reg = open_registry(trained["registry"])
    mv = reg.get("spira", version=1)
    ckpt = load_checkpoint(reg.load_artifact(mv, "model.pt"))
    assert ckpt.feat_cfg.n_mfcc == 20 and ckpt.model_cfg.window_s == 4.0
    for key in ("data_digest", "code_version", "config", "training_key"):
        assert ckpt.meta.get(key), key
    assert ckpt.meta["data_digest"] == mv.metadata["data_digest"]
    assert {"model.pt", "model_card.md", "report.json", "drift_reference.json"} <= set(mv.artifacts)
    ref = ReferenceProfile.from_json(reg.load_artifact(mv, "drift_reference.json"))  # what drift checks compare with
    train = manifest_from_bytes(reg.load_artifact(mv, "split.parquet")).filter(pl.col("split") == "train")
    assert ref.n_clips == train.height and sum(ref.categorical["label"].values()) == train.height
    assert ref.embeddings is not None and ref.embedding_model == mv.artifacts["model.pt"]["sha256"]
    assert reg.ledger("spira")[0]["action"] == "register"


def test_rerun_on_same_snapshot_trains_and_registers_nothing(trained, demo_dataset, fast_overrides):
    spec = RunSpec.build(demo_dataset, trained["registry"], overrides=fast_overrides)
    result = run_pipeline(spec)
    assert result.skipped is True and result.version == 1
    assert [v.version for v in spec.workspace().registry.list_versions("spira")] == [1]


def test_force_retrains_deterministically_as_a_new_version(trained, demo_dataset, fast_overrides):
    # `spira train --force` in a fresh process, like v1: the float reduction order depends on the process's
    # torch thread count, which this test process does not control.
    cmd = [sys.executable, "-c", AUDIT, "train", "--data", str(demo_dataset), "--registry", str(trained["registry"]),
           "--json", "--force", *_sets(fast_overrides)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-2])
    assert result["version"] == 2 and not result["skipped"]
    # Same seed + same data on CPU -> the same weights, bit for bit, and so the same per-clip probabilities.
    reg = open_registry(trained["registry"])
    v1, v2 = (load_checkpoint(reg.load_artifact(reg.get("spira", version=v), "model.pt")) for v in (1, 2))
    s1, s2 = v1.model.state_dict(), v2.model.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    p1, p2 = (json.loads(reg.load_artifact(reg.get("spira", version=v), "report.json"))["curves"]["scores"] for v in (1, 2))
    assert p1 == p2
    assert result["metrics"] == trained["json"]["metrics"]


def test_evaluate_any_labelled_dataset(trained, demo_dataset, demo_speakers, fast_overrides):
    result = evaluate_dataset(RunSpec.build(demo_dataset, trained["registry"], overrides=fast_overrides), "spira:1")
    assert result.version == 1
    assert result.metrics["n_files"] == demo_speakers
    assert 0.0 <= result.metrics["roc_auc"] <= 1.0


def test_predict_cli_and_behaviour(trained, demo_dataset, tmp_path):
    """A gain change or leading silence must not flip a prediction."""
    reg = open_registry(trained["registry"])
    predictor = Predictor.from_bytes(reg.load_artifact(reg.get("spira", version=1), "model.pt"))
    files = sorted(demo_dataset.glob("audio/**/*.wav"))[:6]
    waves = [sf.read(f, dtype="float32", always_2d=True)[0].mean(axis=1) for f in files]
    rates = [sf.info(f).samplerate for f in files]
    waves = [w for w, sr in zip(waves, rates) if sr == 16000]
    assert waves, "need 16 kHz clips"
    base = predictor.probabilities(waves)
    quieter = predictor.probabilities([w * 0.25 for w in waves])
    padded = predictor.probabilities([np.concatenate([np.zeros(8000, np.float32), w]) for w in waves])
    np.testing.assert_allclose(quieter, base, atol=0.02)
    np.testing.assert_allclose(padded, base, atol=0.05)
    assert ((base >= 0.5) == (quieter >= 0.5)).all() and ((base >= 0.5) == (padded >= 0.5)).all()

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVE")
    proc = subprocess.run(
        [sys.executable, "-m", "spira_cli.main", "predict", "--registry", str(trained["registry"]), "--json", str(files[0]), str(bad)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1  # one file could not be scored ...
    out = json.loads(proc.stdout.strip().splitlines()[0])  # ... but the good one was
    assert out["file"] == str(files[0]) and out["decision"] in {"patient", "control"}
    assert "bad.wav" in proc.stderr


def test_bad_rows_are_quarantined_and_the_run_goes_on(tmp_path, demo_dataset, fast_overrides):
    data = tmp_path / "data"
    shutil.copytree(demo_dataset, data)
    victims = sorted(data.glob("audio/**/*.wav"))[:2]
    victims[0].write_bytes(victims[0].read_bytes()[:100])  # truncated
    sf.write(victims[1], np.zeros(16000 * 6, np.float32), 16000)  # silent
    with open(data / "metadata.csv", "a") as fh:
        fh.write("audio/missing.wav,1,F,50,2,ghost,HC-SP\n")
    spec = RunSpec.build(data, tmp_path / "reg", overrides={**fast_overrides, "training.epochs": 1})
    messages: list[str] = []
    result = run_pipeline(spec, say=messages.append)
    assert result.version == 1
    assert any("3 quarantined" in m for m in messages), messages
    reg = open_registry(tmp_path / "reg")
    card = reg.load_artifact(reg.get("spira", version=1), "model_card.md").decode()
    assert "spira" in card.lower()


def test_not_enough_valid_data_fails_with_a_clear_message(tmp_path, demo_dataset, fast_overrides):
    data = tmp_path / "data"
    shutil.copytree(demo_dataset, data)
    for f in data.glob("**/*.wav"):
        if "noises" not in f.parts:
            f.write_bytes(b"garbage")
    for f in data.glob("**/*.flac"):
        f.write_bytes(b"garbage")
    with pytest.raises(PipelineError, match="passed validation"):
        run_pipeline(RunSpec.build(data, tmp_path / "reg", overrides=fast_overrides))
