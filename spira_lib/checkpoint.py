"""Self-describing checkpoints: one file holds everything needed to rebuild and use the model.

A checkpoint is ``torch.save`` of a dict of plain Python values and tensors:

    format_version  int, bumped on any incompatible layout change
    arch            model.arch of the network ("spiraconv_v2", "convstats"); rebuilt on load
    model_config    ModelConfig as JSON-able dict (window length, mode, dropout...)
    feature_config  FeatureConfig as JSON-able dict (the front end the model expects)
    n_features, n_frames
    state_dict      parameter tensors (CPU)
    meta            JSON-able extras: data digest, code version, metrics, history...

Only plain types means it loads with ``torch.load(weights_only=True)``, which
refuses to unpickle arbitrary objects - a model file from a registry must not
be able to run code. Carrying the feature config inside the checkpoint means a
scorer can never silently feed a model features it was not trained on.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import ValidationError

from spira_lib.config import FeatureConfig, ModelConfig
from torch import nn

from spira_lib.model import ARCHS, build_model

FORMAT_VERSION = 1
ARCH = "spiraconv_v2"  # what checkpoints without a model.arch choice hold
_REQUIRED = ("format_version", "arch", "model_config", "feature_config", "n_features", "n_frames", "state_dict", "meta")


class CheckpointError(ValueError):
    """Checkpoint bytes are unreadable or do not describe a model this code can build."""


@dataclass
class LoadedCheckpoint:
    model: nn.Module  # eval mode
    model_cfg: ModelConfig
    feat_cfg: FeatureConfig
    n_frames: int
    meta: dict[str, Any] = field(default_factory=dict)
    n_features: int = 0


def checkpoint_bytes(
    model: nn.Module,
    *,
    model_cfg: ModelConfig,
    feat_cfg: FeatureConfig,
    n_frames: int,
    meta: dict[str, Any],
) -> bytes:
    """Serialise ``model`` with its configs and ``meta`` (must be JSON-able) into checkpoint bytes."""
    if type(model) is not ARCHS.get(model_cfg.arch):
        raise CheckpointError(
            f"checkpoint: model is a {type(model).__name__} but model_cfg.arch is {model_cfg.arch!r}"
        )
    if n_frames != model.n_frames:
        raise CheckpointError(f"checkpoint: n_frames={n_frames} but the model was built for {model.n_frames}")
    try:
        # Round-trip through JSON so tuples, numpy scalars etc. fail here, at save
        # time, instead of making the file unloadable under weights_only=True.
        plain_meta = json.loads(json.dumps(meta, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint meta must be JSON-serialisable: {exc}") from None
    payload = {
        "format_version": FORMAT_VERSION,
        "arch": model_cfg.arch,
        "model_config": model_cfg.model_dump(mode="json"),
        "feature_config": feat_cfg.model_dump(mode="json"),
        "n_features": int(model.n_features),
        "n_frames": int(n_frames),
        "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
        "meta": plain_meta,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def load_checkpoint(data: bytes, map_location: str = "cpu") -> LoadedCheckpoint:
    """Rebuild the model (eval mode, on ``map_location``) and its configs from checkpoint bytes."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad bytes; all mean the same here
        raise CheckpointError(
            f"checkpoint could not be read (corrupt, truncated or not a torch checkpoint): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint must hold a dict, found {type(payload).__name__}")
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint is missing key(s): {', '.join(missing)}")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format_version {payload['format_version']!r} is not supported (this code reads {FORMAT_VERSION})"
        )
    if payload["arch"] not in ARCHS:
        raise CheckpointError(f"checkpoint arch {payload['arch']!r} is unknown (this code builds {', '.join(map(repr, ARCHS))})")
    try:
        model_cfg = ModelConfig.model_validate(payload["model_config"])
        feat_cfg = FeatureConfig.model_validate(payload["feature_config"])
    except ValidationError as exc:
        raise CheckpointError(f"checkpoint configs are invalid: {exc}") from None
    if model_cfg.arch != payload["arch"]:
        raise CheckpointError(
            f"checkpoint arch {payload['arch']!r} does not match its model config (model.arch={model_cfg.arch!r})"
        )
    meta = payload["meta"]
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint meta must be a dict, found {type(meta).__name__}")
    try:
        n_features, n_frames = int(payload["n_features"]), int(payload["n_frames"])
        # fork_rng: building the module draws init weights from the global RNG,
        # and loading a model must not shift a caller's seeded random stream.
        with torch.random.fork_rng(devices=[]):
            model = build_model(n_features, n_frames, model_cfg)
        model.load_state_dict(payload["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint weights do not fit {model_cfg.arch} "
                              f"(n_features={payload['n_features']}, n_frames={payload['n_frames']}): {exc}") from None
    model.to(map_location).eval()
    return LoadedCheckpoint(
        model=model, model_cfg=model_cfg, feat_cfg=feat_cfg, n_frames=n_frames, meta=meta, n_features=n_features
    )
