"""Training and prediction over per-clip features.

``sources`` (where features come from), ``windows`` (window index, batching,
prefetch), ``schedule`` (device, learning rate), ``augment`` (batch
augmentations), ``loop`` (the training loop) and ``predict`` (per-clip
probabilities; what inference imports).
"""
from spira_lib.training.loop import EpochStats, TrainResult, train_model
from spira_lib.training.predict import predict_arrays, predict_clips
from spira_lib.training.schedule import noam_lr, pick_device
from spira_lib.training.sources import ArrayClipSource, ClipSource

__all__ = [
    "ArrayClipSource",
    "ClipSource",
    "EpochStats",
    "TrainResult",
    "noam_lr",
    "pick_device",
    "predict_arrays",
    "predict_clips",
    "train_model",
]
