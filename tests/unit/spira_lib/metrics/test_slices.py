"""Metrics per slice."""
from __future__ import annotations

import polars as pl
import pytest

from spira_lib.metrics import slice_metrics


def _slice_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "label": [1, 0, 1, 0, 1, 0, 1, 0],
            "prob": [0.9, 0.1, 0.8, 0.7, 0.3, 0.2, 0.6, 0.4],
            "sex": ["F", "F", "M", "M", "F", None, "M", "F"],
            "age": [25.0, 40.0, 59.9, 60.0, 75.0, None, 10.0, 250.0],
            "hospital": ["HC", "HC", "HC", "HC", "HC", "HC", "HC", "HC"],
        }
    )


def test_slice_values_bands_and_small_flag():
    slices = slice_metrics(_slice_frame(), threshold=0.5, age_bands=[0, 40, 60, 200], min_slice_size=3)
    keyed = {(s["slice"], s["value"]): s for s in slices}
    assert [k for k in keyed if k[0] == "sex"] == [("sex", "F"), ("sex", "M"), ("sex", "unknown")]
    # Left-closed bands: 40 -> "40-60", 60 -> "60-200"; None and 250 are "unknown".
    assert [k[1] for k in keyed if k[0] == "age_band"] == ["0-40", "40-60", "60-200", "unknown"]
    assert keyed[("age_band", "0-40")]["n"] == 2
    assert keyed[("age_band", "40-60")]["n"] == 2
    assert keyed[("age_band", "60-200")]["n"] == 2
    assert keyed[("age_band", "unknown")]["n"] == 2
    assert keyed[("sex", "F")]["n"] == 4 and keyed[("sex", "F")]["small"] is False
    assert keyed[("sex", "unknown")]["small"] is True
    assert keyed[("hospital", "HC")]["n"] == 8
    # F slice: labels 1,0,1,0 with probs .9,.1,.3,.4 -> tp=1, fn=1, tn=2.
    f = keyed[("sex", "F")]
    assert f["confusion"] == {"tn": 2, "fp": 0, "fn": 1, "tp": 1}
    assert f["balanced_accuracy"] == pytest.approx(0.75)
    # Single-class slice: accuracy is defined, balanced accuracy is not.
    unknown_sex = keyed[("sex", "unknown")]
    assert unknown_sex["balanced_accuracy"] is None and unknown_sex["accuracy"] == 1.0


def test_slice_metrics_skips_missing_columns():
    frame = pl.DataFrame({"label": [1, 0], "prob": [0.7, 0.2], "sex": ["F", "M"]})
    slices = slice_metrics(frame, threshold=0.5, age_bands=[0, 40, 60, 200], min_slice_size=1)
    assert {s["slice"] for s in slices} == {"sex"}


def test_slice_metrics_rejects_bad_bands_and_frames():
    with pytest.raises(ValueError, match="strictly increasing"):
        slice_metrics(_slice_frame(), threshold=0.5, age_bands=[0, 60, 40], min_slice_size=1)
    with pytest.raises(ValueError, match="missing column"):
        slice_metrics(pl.DataFrame({"label": [1]}), threshold=0.5, age_bands=[0, 1], min_slice_size=1)
