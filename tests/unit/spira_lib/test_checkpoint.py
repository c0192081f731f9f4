"""Self-describing checkpoints: roundtrip, safe loading, clear errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from spira_lib.checkpoint import ARCH, FORMAT_VERSION, CheckpointError, checkpoint_bytes, load_checkpoint
from spira_lib.config import FeatureConfig, ModelConfig
from spira_lib.model import SpiraConvV2
from spira_lib.training import predict_arrays

FEAT = FeatureConfig(n_mfcc=8, n_mels=8, hop_length=160)
MODEL = ModelConfig(arch="spiraconv_v2", window_s=0.8, step_s=0.4, fc_hidden=12, dropout=0.3)
META = {"data_digest": "abc123", "code_version": "0.1.0", "metrics": {"roc_auc": 0.91}, "history": [{"epoch": 1}]}


def _model(seed: int = 0) -> SpiraConvV2:
    torch.manual_seed(seed)
    return SpiraConvV2(8, 80, MODEL).eval()


def _bytes(model: SpiraConvV2 | None = None, meta: dict | None = None) -> bytes:
    return checkpoint_bytes(model or _model(), model_cfg=MODEL, feat_cfg=FEAT, n_frames=80, meta=META if meta is None else meta)


def _resave(data: bytes, **changes) -> bytes:
    payload = torch.load(io.BytesIO(data), weights_only=True)
    for key, value in changes.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def test_roundtrip_gives_identical_predictions_configs_and_meta():
    model = _model()
    loaded = load_checkpoint(_bytes(model))
    assert loaded.model_cfg == MODEL and loaded.feat_cfg == FEAT
    assert loaded.n_frames == 80 and loaded.n_features == 8
    assert loaded.meta == META
    assert not loaded.model.training
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal((t, 8)).astype(np.float32) for t in (80, 150, 230)]
    before = predict_arrays(model, clips, model_cfg=MODEL, feat_cfg=FEAT)
    after = predict_arrays(loaded.model, clips, model_cfg=loaded.model_cfg, feat_cfg=loaded.feat_cfg)
    np.testing.assert_array_equal(before, after)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k])


def test_payload_is_plain_and_loads_with_weights_only():
    payload = torch.load(io.BytesIO(_bytes()), weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION and payload["arch"] == ARCH == "spiraconv_v2"
    assert payload["model_config"] == MODEL.model_dump(mode="json")
    assert payload["feature_config"]["n_mfcc"] == 8
    assert (payload["n_features"], payload["n_frames"]) == (8, 80)
    assert all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in payload["state_dict"].values())


def test_loading_does_not_disturb_the_global_rng():
    data = _bytes()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_checkpoint(data)
    assert torch.equal(torch.rand(3), expected)


def test_meta_must_be_json_serialisable():
    with pytest.raises(CheckpointError, match="meta must be JSON-serialisable"):
        _bytes(meta={"when": object()})
    # Tuples are accepted and stored as lists, which weights_only loading allows.
    assert load_checkpoint(_bytes(meta={"shape": (1, 2)})).meta == {"shape": [1, 2]}


def test_n_frames_must_match_the_model():
    with pytest.raises(CheckpointError, match="n_frames=90"):
        checkpoint_bytes(_model(), model_cfg=MODEL, feat_cfg=FEAT, n_frames=90, meta={})


@pytest.mark.parametrize(
    "data",
    [b"", b"not a checkpoint at all", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))],
    ids=["empty", "text", "random"],
)
def test_garbage_bytes_raise_checkpoint_error(data):
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(data)


def test_truncated_bytes_raise_checkpoint_error():
    data = _bytes()
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(data[: len(data) // 2])


def test_unsafe_pickles_are_refused():
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    buf = io.BytesIO()
    torch.save({"payload": Evil()}, buf)
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(buf.getvalue())


def test_structural_problems_are_named():
    data = _bytes()
    with pytest.raises(CheckpointError, match="missing key.*state_dict"):
        load_checkpoint(_resave(data, state_dict=None))
    with pytest.raises(CheckpointError, match="format_version 99 is not supported"):
        load_checkpoint(_resave(data, format_version=99))
    with pytest.raises(CheckpointError, match="arch 'resnet' is unknown"):
        load_checkpoint(_resave(data, arch="resnet"))
    with pytest.raises(CheckpointError, match="configs are invalid"):
        load_checkpoint(_resave(data, model_config={**MODEL.model_dump(mode="json"), "dropout": 2.0}))
    with pytest.raises(CheckpointError, match="weights do not fit.*n_frames=120"):
        load_checkpoint(_resave(data, n_frames=120))
    buf = io.BytesIO()
    torch.save([1, 2, 3], buf)
    with pytest.raises(CheckpointError, match="must hold a dict"):
        load_checkpoint(buf.getvalue())
