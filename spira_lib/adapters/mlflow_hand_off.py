"""Hand-off to MLflow: a promoted model becomes the ``champion`` of SPIRA's MLflow model registry.

SPIRA's inference service loads its model from MLflow (pyfunc flavour). When
the gate promotes a version, ``MlflowPublisher.publish`` logs one MLflow run
holding a pyfunc model (``mlflow_pyfunc.SpiraPyfuncModel``; the checkpoint as
artifact ``checkpoint``; the ``spira_lib`` modules it needs as ``code_paths``;
the feature and model config in the MLmodel metadata), registers it as a new
version of the model name, points alias ``champion`` at it and, while the
server still accepts the deprecated stages, moves it to stage ``Production``
(archiving the previous one). The service loads ``models:/<name>@champion``
(or ``models:/<name>/Production``).

Idempotent per checkpoint: a version whose tag ``spira.checkpoint_sha256`` is
this checkpoint's is reused (alias and stage re-pointed), so a retried task
never registers duplicates. Only ``mlflow-skinny`` and pandas are needed here;
the server is a separate process (see the README's Monitoring section).

Why this module is long: the MLflow client keeps process-global state that
must be saved and restored around a publish, and the shipped code is worked
out from the source (an import closure) so a restructured core ships correctly.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

from spira_lib.ports import PublishedModel

CHAMPION_ALIAS = "champion"
PRODUCTION_STAGE = "Production"
SHA_TAG = "spira.checkpoint_sha256"
DEFAULT_EXPERIMENT = "spira-ct"
SPIRA_ENTRY_MODULE = "spira_lib.inference"
PYFUNC_MODULE = "spira_lib.adapters.mlflow_pyfunc"
# Third-party packages the shipped modules import; pinned to the versions installed where the model is published.
RUNTIME_PACKAGES = ("torch", "torchaudio", "numpy", "soundfile", "pydantic", "pyyaml", "pandas")

_MLFLOW_GLOBALS = threading.Lock()


def spira_lib_dir() -> Path:
    """The directory of the spira_lib package this code runs from (what gets shipped with the model)."""
    return Path(__file__).resolve().parents[1]


def _module_file(lib_dir: Path, dotted: str) -> Path | None:
    """spira_lib.a.b -> lib_dir/a/b.py or lib_dir/a/b/__init__.py (None if neither)."""
    rel = Path(*dotted.split(".")[1:])
    for cand in (lib_dir / rel.with_suffix(".py") if rel.parts else None, lib_dir / rel / "__init__.py"):
        if cand is not None and cand.is_file():
            return cand
    return None


def spira_lib_closure(lib_dir: Path, entry: str = SPIRA_ENTRY_MODULE) -> list[Path]:
    """Files of ``lib_dir`` (the spira_lib package) that importing ``entry`` can load.

    Static and conservative: every ``import``/``from ... import`` anywhere in a module
    (function-level imports included) that names spira_lib is followed; parent packages'
    ``__init__.py`` are included because importing a submodule runs them.
    """
    import ast

    lib_dir = Path(lib_dir)
    pkg = lib_dir.name
    seen: dict[str, Path] = {}
    todo = [entry]
    while todo:
        mod = todo.pop()
        parts = mod.split(".")
        # the package chain: spira_lib, spira_lib.a, spira_lib.a.b ...
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in seen:
                continue
            f = _module_file(lib_dir, name)
            if f is None:
                continue  # an attribute, not a module (from spira_lib.x import func)
            seen[name] = f
            is_pkg = f.name == "__init__.py"
            tree = ast.parse(f.read_text(), filename=str(f))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    todo += [a.name for a in node.names if a.name.split(".")[0] == pkg]
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = name.split(".") if is_pkg else name.split(".")[:-1]
                        base = base[: len(base) - (node.level - 1)]
                        target = ".".join(base + ([node.module] if node.module else []))
                    else:
                        target = node.module or ""
                    if target.split(".")[0] != pkg:
                        continue
                    todo.append(target)
                    todo += [f"{target}.{a.name}" for a in node.names]  # submodules imported by name
    return sorted(set(seen.values()))


def _stage_code(dest: Path, lib_dir: Path) -> list[str]:
    """Copy what the pyfunc needs of spira_lib (the scorer and the wrapper, with their imports) under ``dest``."""
    lib_dir = Path(lib_dir)
    pkg = dest / lib_dir.name
    files = set(spira_lib_closure(lib_dir, SPIRA_ENTRY_MODULE)) | set(spira_lib_closure(lib_dir, PYFUNC_MODULE))
    for f in sorted(files):
        target = pkg / f.relative_to(lib_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    return [str(pkg)]


def _pip_requirements() -> list[str]:
    reqs = []
    for dist in ("mlflow-skinny", *RUNTIME_PACKAGES):
        try:
            reqs.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            if dist == "mlflow-skinny":  # publishing from a full-mlflow install
                reqs.append(f"mlflow-skinny=={importlib.metadata.version('mlflow')}")
            else:
                reqs.append(dist)
    return reqs


def _checkpoint_configs(blob: bytes) -> dict[str, Any]:
    """feature_config / model_config / n_frames read straight from the checkpoint (no spira_lib)."""
    import torch

    payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    return {k: payload[k] for k in ("feature_config", "model_config", "n_features", "n_frames", "arch", "format_version")}


def _signature(threshold: float = 0.5, strict_inputs: bool = False):
    """Outputs + the ``threshold`` param; input columns only when ``strict_inputs``.

    With an input schema MLflow converts a plain list to a one-column DataFrame whose
    unnamed column it then drops as "extra input", so list-of-paths / list-of-bytes
    calls would reach the model empty. The default therefore declares no input schema
    (MLflow then passes input through untouched) and the wrapper validates it itself.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([
        ColSpec("string", "path", required=False),
        ColSpec("binary", "audio", required=False),
        ColSpec("string", "name", required=False),
    ]) if strict_inputs else None
    outputs = Schema([
        ColSpec("string", "file"),
        ColSpec("double", "probability"),
        ColSpec("string", "decision"),
    ])
    params = ParamSchema([ParamSpec("threshold", "double", float(threshold))])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


@contextlib.contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """Point mlflow's *global* tracking/registry URI at ``uri`` and restore it afterwards.

    mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ, and its own
    private _use_tracking_uri() restores by *unsetting* that variable, so both the module
    globals and the environment variables are saved and put back here. Serialised with a
    lock: the fluent API is process-global, two publishes in threads would race.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as reg_utils
    from mlflow.tracking._tracking_service import utils as trk_utils

    with _MLFLOW_GLOBALS:
        saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        saved = (trk_utils._tracking_uri, reg_utils._registry_uri)
        try:
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            yield
        finally:
            mlflow.set_tracking_uri(saved[0])
            mlflow.set_registry_uri(saved[1])
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _flat(prefix: str, d: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, Mapping):
            out.update(_flat(key, v))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return out


def preflight(uri: str, timeout: float = 10.0) -> None:
    """Fail fast when an http(s) tracking server is down.

    Without it the first REST call retries with backoff for ~4 minutes
    (MLFLOW_HTTP_REQUEST_MAX_RETRIES=7, BACKOFF_FACTOR=2) before raising.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            if r.status == 200:
                return
            raise ConnectionError(f"MLflow server {uri} /health answered HTTP {r.status}")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):  # behind auth: /health may be protected; let mlflow try
            return
        raise ConnectionError(f"MLflow server {uri} /health answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"MLflow server {uri} unreachable: {exc}") from None



class MlflowPublisher:
    """Publishes promoted checkpoints to the MLflow tracking server and model registry at ``tracking_uri``."""

    def __init__(self, tracking_uri: str, *, experiment: str = DEFAULT_EXPERIMENT, set_stage: bool = True) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.set_stage = set_stage

    def publish(self, name: str, version: int, checkpoint: bytes, metadata: Mapping[str, Any], *, threshold: float = 0.5) -> PublishedModel:
        preflight(self.tracking_uri)
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        sha = hashlib.sha256(checkpoint).hexdigest()
        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        existing = [mv for mv in client.search_model_versions(f"name = '{name}' and tags.`{SHA_TAG}` = '{sha}'") if mv.status == "READY"]
        if existing:
            mv = max(existing, key=lambda m: int(m.version))
        else:
            mv = self._log_and_register(name, version, checkpoint, dict(metadata), threshold, sha)
        client.set_registered_model_alias(name, CHAMPION_ALIAS, mv.version)
        stage = None
        if self.set_stage:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    client.transition_model_version_stage(name, mv.version, PRODUCTION_STAGE, archive_existing_versions=True)
                stage = PRODUCTION_STAGE
            except MlflowException as exc:  # a registry without stages
                warnings.warn(f"MLflow stage transition refused ({exc}); load models:/{name}@{CHAMPION_ALIAS}")
        client.set_registered_model_tag(name, "spira.champion_version", str(version))
        return PublishedModel(
            name=name, version=str(mv.version), uri=f"models:/{name}@{CHAMPION_ALIAS}", stage=stage,
            reused=bool(existing), location=self.tracking_uri,
        )

    def _log_and_register(self, name: str, version: int, blob: bytes, metadata: dict, threshold: float, sha: str):
        import mlflow
        from mlflow import MlflowClient

        from spira_lib.adapters.mlflow_pyfunc import SpiraPyfuncModel

        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        exp = client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(self.experiment)
        cfgs = _checkpoint_configs(blob)
        metrics = {k: float(v) for k, v in (metadata.get("metrics") or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        tags = {f"spira.{k}": str(v) for k, v in metadata.items() if isinstance(v, (str, int, float, bool))}
        model_meta = {"spira": {"checkpoint_sha256": sha, "threshold": threshold, "version": version, **cfgs,
                                **{k: metadata[k] for k in ("code_version", "data_digest", "config_digest") if k in metadata}}}
        with tempfile.TemporaryDirectory(prefix="spira-mlflow-") as tmp, _tracking(self.tracking_uri):
            ckpt = Path(tmp) / "model.pt"
            ckpt.write_bytes(blob)
            with mlflow.start_run(experiment_id=exp_id, run_name=f"{name}-v{version}"):
                mlflow.set_tags({**tags, SHA_TAG: sha, "spira.version": str(version)})
                mlflow.log_params({**_flat("feature", cfgs["feature_config"]), "threshold": threshold})
                if metrics:
                    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
                if isinstance(metadata.get("decision"), dict):
                    mlflow.log_dict(metadata["decision"], "spira/decision.json")
                mlflow.log_dict(cfgs["feature_config"], "spira/feature_config.json")
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=SpiraPyfuncModel(), artifacts={"checkpoint": str(ckpt)},
                    code_paths=_stage_code(Path(tmp) / "code", spira_lib_dir()), signature=_signature(threshold),
                    pip_requirements=_pip_requirements(), metadata=model_meta, model_config={"threshold": threshold},
                )
            return mlflow.register_model(info.model_uri, name, tags={SHA_TAG: sha, "spira.version": str(version)})
