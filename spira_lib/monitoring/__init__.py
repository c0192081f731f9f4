"""Drift monitoring: audio profiles of raw clips, the reference a model keeps, drift tests and reports.

- ``profile``: ``audio_profile`` (one raw clip -> documented features), ``PROFILE_FEATURES``.
- ``reference``: ``ProfileTable`` (a batch), ``ReferenceProfile`` (what a registered model stores), ``categorical_counts``.
- ``store``: ``ProfileStore``, profiles cached per clip next to the features; ``build_reference``.
- ``embedding``: ``clip_embeddings``, the champion's view of clips (``model.embed``).
- ``drift``: ``feature_drift`` (KS + Wasserstein + BH), ``embedding_mmd``, ``categorical_shift``.
- ``report``: ``drift_report`` -> ``DriftReport`` (decision, severity, picture data, event payload).

Pure functions over arrays and tables; no Prefect, no storage except ``ProfileStore``'s port.
"""
from spira_lib.monitoring.drift import (
    CategoricalShift,
    EmbeddingDrift,
    FeatureDrift,
    bh_adjust,
    categorical_shift,
    embedding_mmd,
    feature_drift,
)
from spira_lib.monitoring.embedding import clip_embeddings
from spira_lib.monitoring.profile import FEATURE_NAMES, PROFILE_FEATURES, PROFILE_VERSION, audio_profile
from spira_lib.monitoring.reference import (
    EmbeddingSample,
    FeatureSample,
    ProfileTable,
    ReferenceProfile,
    categorical_counts,
)
from spira_lib.monitoring.report import DRIFT_EVENT, DriftReport, DriftThresholds, Picture, drift_report, picture
from spira_lib.monitoring.store import ProfileStore, build_reference

__all__ = [
    "DRIFT_EVENT",
    "FEATURE_NAMES",
    "PROFILE_FEATURES",
    "PROFILE_VERSION",
    "CategoricalShift",
    "DriftReport",
    "DriftThresholds",
    "EmbeddingDrift",
    "EmbeddingSample",
    "FeatureDrift",
    "FeatureSample",
    "Picture",
    "ProfileStore",
    "ProfileTable",
    "ReferenceProfile",
    "audio_profile",
    "bh_adjust",
    "build_reference",
    "categorical_counts",
    "categorical_shift",
    "clip_embeddings",
    "drift_report",
    "embedding_mmd",
    "feature_drift",
    "picture",
]
