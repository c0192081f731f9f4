"""Hand-off to a real MLflow server: the promoted model loads as models:/spira@champion and scores like `spira predict`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spira_lib.bootstrap import forget_workspaces, open_publisher
from spira_lib.inference import Predictor
from spira_lib.pipeline.hand_off import hand_off_champion
from tests.servers import mlflow_server
from tests.unit.spira_lib.scoring._helpers import setup, wav

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Loads the model in a fresh interpreter where the project's own spira_lib is NOT importable, so the
# pyfunc must bring everything it needs in its code_paths; prints the probabilities as JSON.
LOADER = r"""
import importlib.util, json, os, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
assert importlib.util.find_spec("spira_lib") is None, "spira_lib must come from the model"
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
import spira_lib
paths = json.loads(sys.argv[2])
out = model.predict(paths)
print(json.dumps({"probability": out["probability"].tolist(), "decision": out["decision"].tolist(),
                  "spira_lib": spira_lib.__file__}))
"""


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


def test_promoted_model_loads_from_mlflow_and_scores_the_same(mlflow_url, tmp_path, monkeypatch):
    forget_workspaces()
    spec = setup(0, challenger=True)
    ws = spec.workspace()
    ws.publisher = open_publisher(mlflow_url)
    published = hand_off_champion(ws, "spira")
    assert published.uri == "models:/spira@champion" and published.stage == "Production" and not published.reused
    # A retried hand-off reuses the version; a new champion becomes the next one.
    assert hand_off_champion(ws, "spira").reused is True
    ws.registry.promote("spira", 2, reason="test: v2 champion")
    assert hand_off_champion(ws, "spira").version == "2"

    files = []
    for i in range(5):
        path = tmp_path / f"clip{i}.wav"
        path.write_bytes(wav(100 + i))
        files.append(str(path))
    predictor = Predictor.from_bytes(ws.registry.load_artifact(ws.registry.champion("spira"), "model.pt"))
    expected = [predictor.predict_bytes(f, Path(f).read_bytes()).probability for f in files]
    env = {"MLFLOW_TRACKING_URI": mlflow_url, "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": "/usr/bin:/bin"}
    for uri in ("models:/spira@champion", "models:/spira/Production"):
        proc = subprocess.run([sys.executable, "-c", LOADER, uri, json.dumps(files)], capture_output=True, text=True,
                              timeout=600, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        assert got["probability"] == pytest.approx(expected, abs=1e-5)
        assert "/code/spira_lib/" in got["spira_lib"] or "\\code\\spira_lib\\" in got["spira_lib"], got["spira_lib"]
