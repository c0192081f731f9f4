"""The MLflow pyfunc model SPIRA's inference service loads: a checkpoint that scores audio.

The logged model is self-contained: the checkpoint (weights + model config +
feature config) is the artifact ``checkpoint``, and the ``spira_lib`` modules
needed to score audio travel as ``code_paths`` (see ``mlflow_hand_off``), so
the loading side needs torch, torchaudio, soundfile, numpy, pydantic, pyyaml,
pandas and mlflow(-skinny) but not the SPIRA project itself.

``predict`` accepts

* a ``pandas.DataFrame`` with an ``audio`` (or ``bytes``) column of raw file
  bytes (WAV/FLAC/OGG) and optionally a ``name`` column, or with a ``path``
  column of local file paths;
* a list (or a single item) of paths (str / os.PathLike) or raw bytes;
* a dict of columns, as MLflow's REST scoring input produces.

It returns a ``DataFrame`` with ``file``, ``probability`` (float64) and
``decision`` ("patient" / "control"), one row per input, in input order.
The decision threshold is the logged one (model_config ``threshold``) unless the
call passes ``params={"threshold": t}``.

This module is imported by name when the model is loaded (the PythonModel
instance is pickled by reference as ``spira_lib.adapters.mlflow_pyfunc``), so it
is shipped in ``code_paths`` with the package and imports the rest of
``spira_lib`` only when the model is loaded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow.pyfunc

AUDIO_COLUMNS = ("audio", "bytes")
PATH_COLUMN = "path"
NAME_COLUMN = "name"
DEFAULT_THRESHOLD = 0.5


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    # numpy.bytes_ is a bytes subclass (caught above); anything else is a caller error.
    raise TypeError(f"audio values must be bytes, got {type(value).__name__}")


def _items_from_input(model_input: Any) -> list[tuple[str, bytes]]:
    """Normalise every accepted input form to ``[(name, audio_bytes), ...]``."""
    import pandas as pd

    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input)
    if isinstance(model_input, pd.Series):
        model_input = model_input.tolist()
    if isinstance(model_input, pd.DataFrame):
        df = model_input
        audio_col = next((c for c in AUDIO_COLUMNS if c in df.columns), None)
        if audio_col is not None:
            names = (
                df[NAME_COLUMN].astype(str).tolist() if NAME_COLUMN in df.columns
                else df[PATH_COLUMN].astype(str).tolist() if PATH_COLUMN in df.columns
                else [f"item-{i}" for i in range(len(df))]
            )
            return [(n, _as_bytes(v)) for n, v in zip(names, df[audio_col].tolist())]
        if PATH_COLUMN in df.columns:
            return [(str(p), Path(p).read_bytes()) for p in df[PATH_COLUMN].tolist()]
        if df.shape[1] == 1:  # an unnamed single column, e.g. from a plain list
            return _items_from_input(df.iloc[:, 0].tolist())
        raise ValueError(
            f"input DataFrame needs an {'/'.join(AUDIO_COLUMNS)} column (raw bytes) or a "
            f"'{PATH_COLUMN}' column (file paths); got columns {list(df.columns)}"
        )
    if isinstance(model_input, (str, os.PathLike, bytes, bytearray, memoryview)):
        model_input = [model_input]
    try:
        seq = list(model_input)
    except TypeError:
        raise TypeError(f"unsupported input type {type(model_input).__name__}") from None
    items: list[tuple[str, bytes]] = []
    for i, v in enumerate(seq):
        if isinstance(v, (str, os.PathLike)):
            items.append((str(v), Path(v).read_bytes()))
        else:
            items.append((f"item-{i}", _as_bytes(v)))
    return items


class SpiraPyfuncModel(mlflow.pyfunc.PythonModel):
    """Scores recordings with the checkpoint in ``context.artifacts["checkpoint"]``."""

    def load_context(self, context) -> None:
        # Imported here: spira_lib comes from the model's code_paths at load time.
        from spira_lib.inference import Predictor

        blob = Path(context.artifacts["checkpoint"]).read_bytes()
        cfg = context.model_config or {}
        self._threshold = float(cfg.get("threshold", DEFAULT_THRESHOLD))
        self._predictor = Predictor.from_bytes(blob, self._threshold)

    # No type hints on model_input on purpose: with hints MLflow 3 switches to
    # type-hint based validation and would reject the list/DataFrame duality.
    def predict(self, context, model_input, params=None):
        import pandas as pd

        threshold = float((params or {}).get("threshold", self._threshold))
        rows = []
        for name, data in _items_from_input(model_input):
            p = self._predictor.predict_bytes(name, data).probability
            rows.append({"file": name, "probability": float(p),
                         "decision": "patient" if p >= threshold else "control"})
        return pd.DataFrame(rows, columns=["file", "probability", "decision"]).astype(
            {"file": "object", "probability": "float64", "decision": "object"})
