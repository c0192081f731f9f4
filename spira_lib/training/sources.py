"""Where training and prediction read per-clip features from: the ClipSource protocol.

Variant 0 of a clip is the clean clip; variants 1.. are its noise-augmented
copies. The feature store provides the production source; ``ArrayClipSource``
serves tests and in-memory callers.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class ClipSource(Protocol):
    """Per-clip features, indexed 0..len-1. Variant 0 is the clean clip; 1.. are noisy copies."""

    def __len__(self) -> int: ...

    def label(self, i: int) -> int: ...

    def n_variants(self, i: int) -> int: ...

    def features(self, i: int, variant: int = 0) -> np.ndarray: ...


class ArrayClipSource:
    """In-memory ClipSource: ``variants[i][v]`` is clip i's variant v as ``[T, F]``."""

    def __init__(self, variants: Sequence[Sequence[np.ndarray]], labels: Sequence[int]) -> None:
        if len(variants) != len(labels):
            raise ValueError(f"ArrayClipSource: {len(variants)} clips but {len(labels)} labels")
        for i, vs in enumerate(variants):
            if len(vs) == 0:
                raise ValueError(f"ArrayClipSource: clip {i} has no variants (variant 0 must be the clean clip)")
        self._variants = [list(vs) for vs in variants]
        self._labels = [int(y) for y in labels]

    @classmethod
    def clean(cls, features: Sequence[np.ndarray], labels: Sequence[int]) -> "ArrayClipSource":
        """One variant (the clean clip) per clip."""
        return cls([[f] for f in features], labels)

    def __len__(self) -> int:
        return len(self._labels)

    def label(self, i: int) -> int:
        return self._labels[i]

    def n_variants(self, i: int) -> int:
        return len(self._variants[i])

    def features(self, i: int, variant: int = 0) -> np.ndarray:
        try:
            return self._variants[i][variant]
        except IndexError:
            raise IndexError(
                f"ArrayClipSource: clip {i} has {self.n_variants(i)} variants, asked for variant {variant}"
            ) from None


def source_labels(source: ClipSource, name: str) -> np.ndarray:
    y = np.array([source.label(i) for i in range(len(source))], dtype=np.int64)
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise ValueError(f"{name} clip {int(bad[0])}: label must be 0 or 1, got {int(y[bad[0]])}")
    return y
