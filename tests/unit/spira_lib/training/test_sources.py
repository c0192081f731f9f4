"""In-memory clip sources."""
from __future__ import annotations

import numpy as np
import pytest

from spira_lib.training import ArrayClipSource, ClipSource


def test_array_clip_source_validates_and_names_the_clip():
    with pytest.raises(ValueError, match="2 clips but 1 labels"):
        ArrayClipSource([[np.zeros((5, 2))], [np.zeros((5, 2))]], [0])
    with pytest.raises(ValueError, match="clip 1 has no variants"):
        ArrayClipSource([[np.zeros((5, 2))], []], [0, 1])
    src = ArrayClipSource([[np.zeros((5, 2))]], [1])
    assert isinstance(src, ClipSource)
    with pytest.raises(IndexError, match="clip 0 has 1 variants"):
        src.features(0, 1)
