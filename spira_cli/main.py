"""`spira` command line: a client of the core (``spira_lib``) and of the flows.

Core commands (demo-data, train, evaluate, predict, registry) never import
Prefect; the orchestration commands (retrain, demo, serve, s3-bridge) import it
lazily, inside the command.
"""
from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="SPIRA continuous training.")
registry_app = typer.Typer(no_args_is_help=True, help="Inspect and move registered models.")
app.add_typer(registry_app, name="registry")

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (defaults: SPIRA's published settings).")
SetOpt = typer.Option(None, "--set", help="Override a config field, e.g. --set training.epochs=5 (repeatable).")


def _fail(message: str, code: int = 1, *, as_json: bool = False, kind: str = "error") -> None:
    """The error on stderr; with ``as_json`` also ``{"error": ..., "kind": ...}`` as the last stdout line."""
    if as_json:
        typer.echo(json.dumps({"error": message, "kind": kind}))
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _error_kind(exc: BaseException) -> str | None:
    """What kind of failure a run's exception is ('dataset', 'config', ...); None for a bug."""
    from spira_lib.config import ConfigError
    from spira_lib.dataset import DatasetError
    from spira_lib.pipeline import PipelineError
    from spira_lib.ports import StoreError
    from spira_lib.registry import RegistryError

    kinds = ((ConfigError, "config"), (DatasetError, "dataset"), (PipelineError, "pipeline"),
             (RegistryError, "registry"), (StoreError, "storage"))  # fmt: skip
    return next((kind for cls, kind in kinds if isinstance(exc, cls)), None)


@contextmanager
def _reported(as_json: bool) -> Iterator[None]:
    """Known failures (bad data, config, storage, registry) as one message and exit 1 (2 for config), no traceback.

    Anything else is a bug: with ``--json`` its JSON error line is printed first, then the traceback.
    """
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        kind = _error_kind(exc)
        if kind is None:
            if as_json:
                typer.echo(json.dumps({"error": f"{type(exc).__name__}: {exc}", "kind": "internal"}))
            raise
        _fail(str(exc), 2 if kind == "config" else 1, as_json=as_json, kind=kind)


def _config(config: Optional[Path], sets: Optional[List[str]], seed: Optional[int] = None, *, as_json: bool = False):
    from spira_lib.config import ConfigError, load_config, parse_override

    try:
        overrides = dict(parse_override(s) for s in (sets or []))
        if seed is not None:
            overrides["training.seed"] = seed
        return load_config(config, overrides)
    except ConfigError as exc:
        _fail(str(exc), 2, as_json=as_json, kind="config")


def _log_setup(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _print_outcome(outcome, as_json: bool) -> None:
    """One JSON object as the last line (--json), or one sentence."""
    if as_json:
        typer.echo(json.dumps(outcome.model_dump(include={"model", "version", "metrics", "promoted", "skipped"}), default=str))
    else:
        typer.echo(f"model {outcome.model} v{outcome.version}: {outcome.verdict} ({outcome.uri})")


def _say(quiet: bool):
    return (lambda _m: None) if quiet else (lambda m: typer.echo(m, err=True))


@app.command("demo-data")
def demo_data(
    out_dir: Path = typer.Argument(..., help="Folder to write the dataset into."),
    speakers: int = typer.Option(200, "--speakers", min=4),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a synthetic dataset in SPIRA's format, plus ward-noise recordings."""
    from spira_demo import generate_demo_dataset

    summary = generate_demo_dataset(out_dir, speakers=speakers, seed=seed)
    typer.echo(json.dumps(summary.to_dict(), default=str))


@app.command()
def train(
    data: str = typer.Option(..., "--data", help="Dataset folder or s3://bucket/prefix."),
    registry: str = typer.Option(..., "--registry", help="Registry folder or s3://bucket/prefix."),
    config: Optional[Path] = ConfigOpt,
    sets: Optional[List[str]] = SetOpt,
    seed: Optional[int] = typer.Option(None, "--seed", help="Training seed (overrides training.seed)."),
    model: str = typer.Option("spira", "--model", help="Registered model name."),
    force: bool = typer.Option(False, "--force", help="Train even if this snapshot + config was trained before."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """validate -> features -> split -> train -> evaluate -> register (and promote through the gate)."""
    from spira_lib.pipeline import RunSpec, run_pipeline

    _log_setup(as_json)
    spec = RunSpec(data_uri=data, registry_uri=registry, config=_config(config, sets, seed, as_json=as_json), model_name=model)

    def on_epoch(s) -> None:
        if not as_json:
            typer.echo(f"  epoch {s.epoch:3d}  train_loss {s.train_loss:.4f}  val_loss {s.val_loss:.4f}  val_acc {s.val_accuracy:.3f}{'  *' if s.is_best else ''}", err=True)

    with _reported(as_json):
        outcome = run_pipeline(spec, force=force, say=_say(False), on_epoch=on_epoch)
    _print_outcome(outcome, as_json)


@app.command()
def evaluate(
    registry: str = typer.Option(..., "--registry"),
    data: str = typer.Option(..., "--data", help="Any labelled dataset in SPIRA's format."),
    model: str = typer.Option("spira", "--model", help="NAME, NAME@ALIAS or NAME:VERSION (NAME = its champion)."),
    config: Optional[Path] = ConfigOpt,
    sets: Optional[List[str]] = SetOpt,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Score a registered model on a labelled dataset."""
    from spira_lib.pipeline import RunSpec, evaluate_dataset

    _log_setup(as_json)
    spec = RunSpec(data_uri=data, registry_uri=registry, config=_config(config, sets, as_json=as_json))
    with _reported(as_json):
        result = evaluate_dataset(spec, model)
    if as_json:
        typer.echo(json.dumps(result.metrics, default=str))
        return
    typer.echo(f"{result.model} v{result.version} on {result.data} ({result.metrics['n_files']} files, {result.n_quarantined} quarantined)")
    for k, v in result.metrics.items():
        typer.echo(f"  {k:18s} {v if not isinstance(v, float) else f'{v:.4f}'}")


@app.command()
def predict(
    files: List[Path] = typer.Argument(..., help="Audio files (WAV/FLAC/OGG)."),
    registry: str = typer.Option(..., "--registry"),
    model: str = typer.Option("spira", "--model"),
    threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Per-file probability of respiratory insufficiency and the decision."""
    from spira_lib.audio import AudioError
    from spira_lib.bootstrap import open_registry
    from spira_lib.inference import Predictor
    from spira_lib.registry import RegistryError

    reg = open_registry(registry)
    try:
        mv = reg.resolve(model)
        predictor = Predictor.from_bytes(reg.load_artifact(mv, "model.pt"), threshold)
    except RegistryError as exc:
        _fail(str(exc))
    failed = 0
    for f in files:
        try:
            p = predictor.predict_bytes(str(f), f.read_bytes())
        except (OSError, AudioError) as exc:
            failed += 1
            typer.secho(f"{f}: cannot score: {exc}", fg=typer.colors.RED, err=True)
            continue
        typer.echo(json.dumps(p.to_dict()) if as_json else f"{p.file}\t{p.probability:.4f}\t{p.decision}")
    if failed:
        raise typer.Exit(1)


@app.command()
def score(
    inbox: str = typer.Option(..., "--inbox", help="Folder or s3://bucket/prefix of unlabelled recordings."),
    registry: str = typer.Option(..., "--registry"),
    model: str = typer.Option("spira", "--model", help="Registered model name (its champion scores)."),
    config: Optional[Path] = ConfigOpt,
    sets: Optional[List[str]] = SetOpt,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Score the inbox's new recordings with the champion (and a challenger in shadow); Parquet next to the registry."""
    from spira_lib.pipeline import RunSpec
    from spira_lib.registry import RegistryError
    from spira_lib.scoring import run_scoring

    _log_setup(as_json)
    spec = RunSpec(data_uri=inbox, registry_uri=registry, config=_config(config, sets), model_name=model)
    try:
        outcome = run_scoring(spec, say=_say(as_json))
    except RegistryError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(outcome.model_dump_json(exclude={"champion": {"shas"}}))
    else:
        typer.echo(outcome.champion.describe())


@app.command()
def retrain(
    data: str = typer.Option(..., "--data", help="Dataset folder or s3://bucket/prefix."),
    registry: str = typer.Option(..., "--registry", help="Registry folder or s3://bucket/prefix."),
    config: Optional[Path] = ConfigOpt,
    sets: Optional[List[str]] = SetOpt,
    model: str = typer.Option("spira", "--model"),
    force: bool = typer.Option(False, "--force", help="Ignore caches and the already-trained check."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run the spira-retrain Prefect flow (embedded server unless PREFECT_API_URL is set)."""
    from spira_lib.config import ConfigError, parse_override

    try:
        overrides = dict(parse_override(s) for s in (sets or []))
        _config(config, sets, as_json=as_json)  # fail fast with a clear message before Prefect starts
    except ConfigError as exc:
        _fail(str(exc), 2, as_json=as_json, kind="config")
    from spira_cli.orchestrated import run_retrain

    with _reported(as_json):
        outcome = run_retrain(data, registry, config_path=str(config) if config else None, overrides=overrides, model_name=model, force=force)
    _print_outcome(outcome, as_json)


@app.command()
def demo(
    workdir: Path = typer.Option(Path("demo"), "--workdir", help="Where the demo dataset and registry go."),
    speakers: int = typer.Option(200, "--speakers", min=8),
    seed: int = typer.Option(0, "--seed"),
    plain: bool = typer.Option(False, "--plain", help="Run the pipeline without Prefect."),
) -> None:
    """Generate the demo dataset (once) and run the main job on it with embedded defaults."""
    from spira_demo import generate_demo_dataset

    data_dir, reg_dir = workdir / "data", workdir / "registry"
    if not any(data_dir.glob("**/*.csv")):
        typer.echo(f"generating the demo dataset ({speakers} speakers) in {data_dir} ...", err=True)
        generate_demo_dataset(data_dir, speakers=speakers, seed=seed)
    if plain:
        train(data=str(data_dir), registry=str(reg_dir), config=None, sets=None, seed=None, model="spira", force=False, as_json=False)
        return
    from spira_cli.orchestrated import run_demo_flow

    run_demo_flow(data_dir, reg_dir)


_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command("s3-bridge", context_settings=_PASSTHROUGH, add_help_option=False)
def s3_bridge(ctx: typer.Context) -> None:
    """Long-poll SQS for S3 notifications and emit Prefect events (see --help of the bridge)."""
    from deployments.s3_bridge import main as bridge_main

    raise typer.Exit(bridge_main(list(ctx.args)) or 0)


@app.command("serve", context_settings=_PASSTHROUGH, add_help_option=False)
def serve(ctx: typer.Context) -> None:
    """Serve the spira deployments (event trigger included) from this process; needs PREFECT_API_URL."""
    from deployments.serve import main as serve_main

    raise typer.Exit(serve_main(list(ctx.args)) or 0)


# `spira doctor`: checks a production setup before deploying (Prefect and boto3 imported only when run).
from spira_cli.doctor import doctor as _doctor  # noqa: E402

app.command("doctor")(_doctor)


@registry_app.command("list")
def registry_list(registry: str = typer.Option(..., "--registry")) -> None:
    """Models, their versions and aliases."""
    from spira_lib.bootstrap import open_registry

    reg = open_registry(registry)
    for name in reg.list_models():
        aliases = reg.aliases(name)
        for mv in reg.list_versions(name):
            tags = ",".join(a for a, v in aliases.items() if v == mv.version)
            auc = (mv.metadata.get("metrics") or {}).get("roc_auc")
            auc_txt = f"{auc:.3f}" if isinstance(auc, float) else "-"
            typer.echo(f"{name}\tv{mv.version}\t{mv.created_at}\troc_auc={auc_txt}\t{tags}")


@registry_app.command("show")
def registry_show(
    ref: str = typer.Argument("spira", help="NAME, NAME@ALIAS or NAME:VERSION"),
    registry: str = typer.Option(..., "--registry"),
    ledger: bool = typer.Option(False, "--ledger", help="Also print the promotion ledger."),
) -> None:
    """One version's metadata (JSON)."""
    from spira_lib.bootstrap import open_registry
    from spira_lib.registry import RegistryError

    reg = open_registry(registry)
    try:
        mv = reg.resolve(ref)
    except RegistryError as exc:
        _fail(str(exc))
    out = mv.to_dict()
    out["aliases"] = {a: v for a, v in reg.aliases(mv.name).items() if v == mv.version}
    if ledger:
        out["ledger"] = reg.ledger(mv.name)
    typer.echo(json.dumps(out, indent=2, default=str))


@registry_app.command("promote")
def registry_promote(
    ref: str = typer.Argument(..., help="NAME:VERSION to make champion"),
    registry: str = typer.Option(..., "--registry"),
    reason: str = typer.Option("manual promotion", "--reason"),
) -> None:
    """Make a version the champion (recorded in the ledger)."""
    from spira_lib.bootstrap import open_workspace
    from spira_lib.registry import RegistryError

    ws = open_workspace(registry, registry)
    try:
        mv = ws.registry.resolve(ref)
        ws.registry.promote(mv.name, mv.version, reason=reason, actor="cli")
    except RegistryError as exc:
        _fail(str(exc))
    typer.echo(f"{mv.name} v{mv.version} is now champion")
    _hand_off(ws, mv.name)


@registry_app.command("rollback")
def registry_rollback(
    name: str = typer.Argument("spira"),
    registry: str = typer.Option(..., "--registry"),
    reason: str = typer.Option("manual rollback", "--reason"),
) -> None:
    """Move champion back to the previous champion (recorded in the ledger)."""
    from spira_lib.bootstrap import open_workspace
    from spira_lib.registry import RegistryError

    ws = open_workspace(registry, registry)
    try:
        mv = ws.registry.rollback(name, reason=reason, actor="cli")
    except RegistryError as exc:
        _fail(str(exc))
    typer.echo(f"{name}: champion rolled back to v{mv.version}")
    _hand_off(ws, name)


def _hand_off(ws, name: str) -> None:
    """The new champion to serving (MLflow), when SPIRA_MLFLOW_TRACKING_URI is set."""
    from spira_lib.pipeline.hand_off import hand_off_champion

    published = hand_off_champion(ws, name)
    if published is not None:
        typer.echo(f"handed off to serving: {published.uri} (MLflow version {published.version})")


@registry_app.command("verify")
def registry_verify(
    registry: str = typer.Option(..., "--registry", help="Registry folder or s3://bucket/prefix."),
    model: Optional[str] = typer.Option(None, "--model", help="Check only this model (default: every stored model)."),
    repair: bool = typer.Option(False, "--repair", help="First delete abandoned version folders (no marker, claim expired)."),
    as_json: bool = typer.Option(False, "--json", help="Print {model: [problems]} as JSON."),
) -> None:
    """Check artifacts against their markers, orphans, aliases and the ledger; exit 1 listing any problem."""
    from spira_lib.bootstrap import open_registry
    from spira_lib.registry import RegistryError
    from spira_lib.registry.verify import stored_model_names, verify_registry

    reg = open_registry(registry)
    names = [model] if model else stored_model_names(reg)
    if repair:
        for name in names:
            try:
                swept = reg.sweep(name)
            except RegistryError:
                swept = []  # an invalid name: verify reports it below
            for number in swept:
                typer.echo(f"{name}: deleted abandoned version folder {number:04d}", err=True)
    results = verify_registry(reg, names)
    problems = sum(len(p) for p in results.values())
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        for name, found in results.items():
            typer.echo(f"{name}: {'ok' if not found else f'{len(found)} problem(s)'}")
            for line in found:
                typer.echo(f"  - {line}")
        if not results:
            typer.echo(f"no models stored under {reg.store.uri}")
    raise typer.Exit(1 if problems else 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
