"""prefect.yaml, deployments/triggers.py and deployments/serve.py agree on when spira-retrain runs.

A bad edit to the trigger (per-object windows, a UUID that cannot render, no
settle delay, no concurrency limit, a lost GPU request) fails here, long
before an upload burst trains 200 times or not at all.
"""
from __future__ import annotations

import importlib
import inspect
import os
import re
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel  # private: prefect is pinned to 3.8.8
from prefect.cli.deploy._triggers import _initialize_deployment_triggers
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.utilities.templating import apply_values

from deployments import triggers as T

ROOT = Path(__file__).resolve().parents[3]
RAW = yaml.safe_load((ROOT / "prefect.yaml").read_text())
ENV = {
    "SPIRA_DATA_URI": "s3://spira-raw/incoming",
    "SPIRA_REGISTRY_URI": "s3://spira-models/registry",
    "SPIRA_IMAGE": "registry.example.org/spira-ct:0.1.0",
}
PLACEHOLDER = re.compile(r"{{\s*\$(\w+)\s*}}")
STEP_OUTPUT = re.compile(r"{{\s*([\w-]+)\.(\w+)\s*}}")


def deployments(flow_fn: str | None = None) -> list[dict[str, Any]]:
    out = RAW["deployments"]
    return [d for d in out if flow_fn is None or d["entrypoint"].endswith(":" + flow_fn)]


def build_steps(dep: dict[str, Any]) -> list[dict[str, Any]]:
    return dep.get("build") or RAW["build"]  # a deployment's own build replaces the global one


def step_outputs(dep: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The outputs of the deployment's build steps with ``env`` exported, keyed by step id as `prefect deploy` does.

    (Prefect's own ``run_steps`` would also resolve Prefect variables, which needs a server.)
    """
    outputs: dict[str, Any] = {}
    with mock.patch.dict(os.environ, env, clear=False):
        for name in {T.SETTLE_ENV, T.CONFIG_ENV} - set(env):
            os.environ.pop(name, None)
        for step in build_steps(dep):
            ((fqn, inputs),) = step.items()
            inputs = dict(inputs)
            step_id = inputs.pop("id")
            module, fn = fqn.rsplit(".", 1)
            outputs[step_id] = getattr(importlib.import_module(module), fn)(**apply_values(inputs, outputs))
    return outputs


def rendered(obj: Any, outputs: dict[str, Any] | None = None) -> Any:
    """What `prefect deploy` makes of the {{ $VAR }} and step-output placeholders with ENV exported."""
    with mock.patch.dict(os.environ, ENV):
        obj = apply_values(obj, os.environ, remove_notset=False)
    return apply_values(obj, outputs or {}, remove_notset=False) if outputs else obj


def yaml_triggers(dep: dict[str, Any], env: dict[str, str] | None = None):
    """The triggers as `prefect deploy` builds them: env placeholders, then build-step outputs (not in parameters)."""
    outputs = step_outputs(dep, {**ENV, **(env or {})})
    specs = []
    for raw in rendered(dep.get("triggers") or []):
        spec = dict(raw)
        parameters = spec.pop("parameters", None)
        spec = apply_values(spec, outputs, warn_on_notset=False)
        if parameters is not None:
            spec["parameters"] = parameters
        specs.append(spec)
    return _initialize_deployment_triggers(dep["name"], specs)


# ------------------------------------------------------------------ prefect.yaml


def test_prefect_validates_the_file_and_builds_the_automations() -> None:
    model = PrefectYamlModel.model_validate(RAW)
    assert {(d.name, d.entrypoint) for d in model.deployments} == {
        (target, entrypoint)
        for target in ("gpu", "local")
        for entrypoint in ("flows/retrain.py:retrain_flow", "flows/score.py:score_flow",
                           "flows/evaluate.py:evaluate_champion_flow", "flows/rollback.py:rollback_flow")
    }
    assert {d.work_pool.name for d in model.deployments if d.name == "gpu"} == {"spira-gpu"}
    assert {d.work_pool.name for d in model.deployments if d.name == "local"} == {"spira-local"}
    for dep in deployments():
        for trig in yaml_triggers(dep):
            trig.set_deployment_id(uuid.uuid4())
            automation = trig.as_automation()
            assert automation.actions[0].type == "run-deployment"


def test_entrypoints_import_and_parameters_exist() -> None:
    names = {"retrain_flow": "spira-retrain", "score_flow": "spira-score", "evaluate_champion_flow": "spira-evaluate-champion",
             "rollback_flow": "spira-rollback"}
    for dep in deployments():
        path, fn = dep["entrypoint"].split(":")
        assert (ROOT / path).is_file(), path
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), fn)
        assert flow.name == names[fn]
        accepted = set(inspect.signature(flow.fn).parameters)
        given = set(dep.get("parameters") or {})
        for trig in dep.get("triggers") or []:
            given |= set(trig.get("parameters") or {})
        assert given <= accepted, f"{dep['name']} {fn}: unknown parameters {given - accepted}"


@pytest.mark.parametrize("dep", deployments("retrain_flow"), ids=lambda d: d["name"])
def test_retrain_trigger_is_one_run_per_upload_burst(dep: dict[str, Any]) -> None:
    (raw,) = [t for t in dep["triggers"] if t["expect"] != ["spira.drift.detected"]]
    assert raw["expect"] == [T.EVENT_NAME]
    assert raw["for_each"] == ["s3.bucket"], "per-object bucketing would start one run per uploaded clip"
    assert raw["posture"] == "Reactive" and raw["threshold"] == 1
    # One deploy-time window for both: events absorbed for as long as the run waits.
    assert raw["within"] == raw["schedule_after"] == "{{ spira-window.seconds }}"
    assert raw["match"] == {"prefect.resource.id": "{{ $SPIRA_DATA_URI }}/*"}
    assert raw["parameters"]["trigger"] == "{{ event.resource.id }}"
    assert re.fullmatch(r"{{\s*event\.id\s*\|\s*string\s*}}", raw["parameters"]["event_id"]), "event.id needs | string"
    limit = dep["concurrency_limit"]
    assert limit["limit"] == 1
    assert ConcurrencyLimitStrategy(limit["collision_strategy"]) == ConcurrencyLimitStrategy.ENQUEUE
    # The data the run snapshots is the data the trigger watches (the flow refuses anything else).
    assert dep["parameters"]["data_uri"] == "{{ $SPIRA_DATA_URI }}"


@pytest.mark.parametrize("dep", deployments("retrain_flow"), ids=lambda d: d["name"])
def test_yaml_trigger_matches_the_python_trigger(dep: dict[str, Any]) -> None:
    (from_yaml,) = [t for t in yaml_triggers(dep) if t.name.startswith(T.TRIGGER_NAME)]
    within = int(from_yaml.within.total_seconds())
    from_python = T.retrain_trigger("spira-raw", "incoming", within)
    skip = ("name", "enabled")
    assert {k: v for k, v in T.trigger_as_yaml(from_yaml).items() if k not in skip} == {
        k: v for k, v in T.trigger_as_yaml(from_python).items() if k not in skip
    }
    assert within == T.DEFAULT_SETTLE_SECONDS


def test_only_the_gpu_trigger_is_enabled_by_default() -> None:
    by_name = {d["name"]: yaml_triggers(d)[0] for d in deployments("retrain_flow")}
    assert by_name["gpu"].enabled is True
    # `deploy --all` must not train each burst twice.
    assert by_name["local"].enabled is False
    # The README's `prefect automation resume NAME` and `spira doctor` rely on these names.
    assert (by_name["gpu"].name, by_name["local"].name) == (T.TRIGGER_NAME, T.LOCAL_TRIGGER_NAME)


@pytest.mark.parametrize("dep", deployments("retrain_flow"), ids=lambda d: d["name"])
def test_retrain_on_drift_is_off_by_default_and_cannot_restart_itself(dep: dict[str, Any]) -> None:
    from spira_lib.monitoring import DRIFT_EVENT

    (trig,) = [t for t in yaml_triggers(dep) if DRIFT_EVENT in t.expect]
    assert trig.enabled is False and trig.name.startswith("spira-retrain-on-drift")
    # Only major drift seen by spira-score; the retrain run's own drift events carry source=retrain.
    assert trig.match.model_dump() == {"prefect.resource.id": "spira.model.spira.*", "spira.drift.source": "score",
                                       "spira.drift.severity": "major"}
    assert trig.threshold == 1 and trig.within.total_seconds() >= 3600  # at most one retrain a day from drift
    # No `trigger` parameter: the flow refuses one that is not an object of the dataset.
    assert set(trig.parameters) == {"event_id"}
    assert dep["concurrency_limit"]["limit"] == 1


def test_optional_schedule_is_inactive() -> None:
    for dep in deployments("retrain_flow"):
        assert dep["schedules"], dep["name"]
        assert all(s.get("active") is False for s in dep["schedules"])


def test_gpu_deployments_request_a_gpu_and_run_the_dockerfile_code() -> None:
    workdir = re.findall(r"^WORKDIR\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)[-1]
    for dep in (d for d in deployments() if d["name"] == "gpu"):
        jv = dep["work_pool"]["job_variables"]
        assert jv["image"] == "{{ $SPIRA_IMAGE }}"
        (req,) = jv["container_create_kwargs"]["device_requests"]
        assert req["driver"] == "nvidia" and req["capabilities"] == [["gpu"]] and req["count"] != 0
        step, credentials = dep["pull"]
        assert step["prefect.deployments.steps.set_working_directory"]["directory"] == workdir
        # Credentials from a prefect-aws block named in the environment; the step must import in the image.
        (path,) = credentials
        module, func = path.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), func))
    (retrain,) = [d for d in deployments("retrain_flow") if d["name"] == "gpu"]
    # Without a GPU (e.g. the pool-template trap) the run must fail, not train on CPU.
    assert retrain["parameters"]["overrides"] == {"training.device": "cuda"}


def test_every_env_placeholder_is_checked_at_deploy_time() -> None:
    for dep in deployments():
        used = set(PLACEHOLDER.findall(yaml.safe_dump(dep)))
        required = set(build_steps(dep)[0]["deployments.triggers.require_env"]["names"])
        assert used <= required, f"{dep['name']} {dep['entrypoint']}: {used - required} unset would deploy as ''"


@pytest.mark.parametrize("dep", deployments("retrain_flow"), ids=lambda d: d["name"])
def test_window_is_chosen_at_deploy_time(dep: dict[str, Any]) -> None:
    """$SPIRA_SETTLE_SECONDS sets the window of every target; unset, it is the 600 s default."""
    for env, seconds in (({}, T.DEFAULT_SETTLE_SECONDS), ({"SPIRA_SETTLE_SECONDS": "8"}, 8),
                         ({"SPIRA_SETTLE_SECONDS": " "}, T.DEFAULT_SETTLE_SECONDS)):
        (trig,) = [t for t in yaml_triggers(dep, env) if t.name.startswith(T.TRIGGER_NAME)]  # the upload trigger
        assert trig.within.total_seconds() == trig.schedule_after.total_seconds() == seconds, env
    with pytest.raises(ValueError, match="SPIRA_SETTLE_SECONDS='0' must be a positive whole number"):
        yaml_triggers(dep, {"SPIRA_SETTLE_SECONDS": "0"})


def test_every_step_output_placeholder_has_its_step() -> None:
    """A deployment whose own build lacks a step would deploy the literal '{{ spira-window.seconds }}'."""
    for dep in deployments():
        text = yaml.safe_dump({k: v for k, v in dep.items() if k != "triggers"} | {
            "triggers": [{k: v for k, v in t.items() if k != "parameters"} for t in dep.get("triggers") or []]})
        used = {step for step, _ in STEP_OUTPUT.findall(text)} - {"event"}
        ids = {inputs["id"] for step in build_steps(dep) for inputs in step.values()}
        assert used <= ids, f"{dep['name']} {dep['entrypoint']}: steps {used - ids} missing from its build"
        outputs = step_outputs(dep, ENV)
        for step, key in STEP_OUTPUT.findall(text):
            if step != "event":
                assert key in outputs[step], f"{step}.{key}"


@pytest.mark.parametrize("dep", [d for d in deployments() if "config_path" in (d.get("parameters") or {})],
                         ids=lambda d: f"{d['name']}-{d['entrypoint'].split(':')[1]}")
def test_runs_config_is_chosen_at_deploy_time(dep: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # `prefect deploy` runs from the repository root
    for env, expected in (({}, None), ({"SPIRA_CONFIG": "configs/fast.yaml"}, "configs/fast.yaml")):
        params = rendered(dep["parameters"], step_outputs(dep, {**ENV, **env}))
        assert params.get("config_path") == expected, env


def test_retrain_and_evaluate_take_the_deploy_time_config() -> None:
    for fn in ("retrain_flow", "evaluate_champion_flow"):
        assert all(d["parameters"]["config_path"] == "{{ spira-config.path }}" for d in deployments(fn)), fn


def test_run_config_loads_the_file_at_deploy_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert T.run_config(env={}) == {"path": None}
    assert T.run_config(env={"SPIRA_CONFIG": "configs/fast.yaml"}) == {"path": "configs/fast.yaml"}
    with pytest.raises(ValueError, match="SPIRA_CONFIG='nope.yaml': config file nope.yaml does not exist"):
        T.run_config(env={"SPIRA_CONFIG": "nope.yaml"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: -3\n")
    with pytest.raises(ValueError, match="training.epochs"):
        T.run_config(env={"SPIRA_CONFIG": str(bad)})


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5", "10m"])
def test_settle_window_refuses_a_bad_value(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(T.SETTLE_ENV, value)
    with pytest.raises(ValueError, match=f"{T.SETTLE_ENV}='{re.escape(value)}' must be a positive whole number"):
        T.settle_window()


def test_settle_window_reads_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(T.SETTLE_ENV, raising=False)
    assert T.settle_window() == {"seconds": 600}
    monkeypatch.setenv(T.SETTLE_ENV, " 45 ")
    assert T.settle_window() == {"seconds": 45}


def test_no_credentials_or_api_url_in_the_file() -> None:
    text = (ROOT / "prefect.yaml").read_text()
    for needle in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PREFECT_API_KEY", "PREFECT_API_URL:"):
        assert needle not in text, needle
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)


# ------------------------------------------------------------------ triggers.py


def test_event_name_is_the_bridges() -> None:
    from deployments.s3_bridge import DEFAULT_EVENT_NAME

    assert T.EVENT_NAME == DEFAULT_EVENT_NAME


def test_retrain_trigger_shape_and_validation() -> None:
    trig = T.retrain_trigger("bkt", "incoming", 8, extra_parameters={"force": False, "trigger": "spoofed"})
    assert trig.within.total_seconds() == trig.schedule_after.total_seconds() == 8
    assert trig.for_each == {"s3.bucket"} and trig.threshold == 1
    assert trig.match.root == {"prefect.resource.id": "s3://bkt/incoming/*"}
    # The event always wins over a caller's fixed value for the event-derived parameters.
    assert trig.parameters == {"force": False, **T.EVENT_PARAMETERS}
    for bad in (0, -1, True, "8"):
        with pytest.raises(ValueError, match="settle_seconds"):
            T.retrain_trigger("bkt", "incoming", bad)
    assert T.retrain_concurrency().limit == 1
    assert T.retrain_concurrency().collision_strategy == ConcurrencyLimitStrategy.ENQUEUE


@pytest.mark.parametrize(
    "uri",
    ["s3://bkt/incoming/a.wav", "s3://bkt/incoming/hospital_b/metadata.csv", "s3://bkt/incoming2/a.wav",
     "s3://bkt/incoming", "s3://other/incoming/a.wav", "s3://bkt/registry/spira/v1/model.pt"],
)
def test_trigger_fires_exactly_for_objects_the_flow_accepts(uri: str) -> None:
    """Whatever the trigger matches passes the flow's check_trigger, and nothing else does."""
    from prefect.events.schemas.events import Resource

    from flows.common import check_trigger

    matched = T.retrain_trigger("bkt", "incoming", 5).match.includes([Resource({"prefect.resource.id": uri})])
    try:
        check_trigger(uri, "s3://bkt/incoming")
        accepted = True
    except ValueError:
        accepted = False
    assert matched == accepted


def test_require_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIRA_DATA_URI", "s3://b/incoming")
    monkeypatch.setenv("SPIRA_REGISTRY_URI", " ")
    monkeypatch.delenv("SPIRA_IMAGE", raising=False)
    with pytest.raises(ValueError) as info:
        T.require_env(["SPIRA_DATA_URI", "SPIRA_REGISTRY_URI", "SPIRA_IMAGE"])
    assert "SPIRA_REGISTRY_URI, SPIRA_IMAGE" in str(info.value) and "SPIRA_DATA_URI," not in str(info.value)
    monkeypatch.setenv("SPIRA_REGISTRY_URI", "s3://b/registry/")
    with pytest.raises(ValueError, match="SPIRA_REGISTRY_URI='s3://b/registry/' must not end with '/'"):
        T.require_env(["SPIRA_DATA_URI", "SPIRA_REGISTRY_URI"])
    monkeypatch.setenv("SPIRA_REGISTRY_URI", "s3://b/incoming/models")
    with pytest.raises(ValueError, match="lies inside the watched SPIRA_DATA_URI"):
        T.require_env(["SPIRA_DATA_URI", "SPIRA_REGISTRY_URI"])
    monkeypatch.setenv("SPIRA_REGISTRY_URI", "s3://b/registry")
    assert T.require_env(["SPIRA_DATA_URI", "SPIRA_REGISTRY_URI"]) == {
        "SPIRA_DATA_URI": "s3://b/incoming",
        "SPIRA_REGISTRY_URI": "s3://b/registry",
    }


# ------------------------------------------------------------------ serve.py


def test_served_deployments_carry_trigger_limit_and_parameters() -> None:
    from deployments.serve import build_deployments

    retrain, evaluate, rollback = build_deployments(
        "s3://bkt/incoming/", "s3://bkt/registry", overrides={"training.epochs": 3}, settle_seconds=8, name="e2e"
    )
    assert (retrain.flow_name, evaluate.flow_name, rollback.flow_name) == ("spira-retrain", "spira-evaluate-champion", "spira-rollback")
    assert retrain.name == evaluate.name == rollback.name == "e2e"
    assert retrain.parameters == {
        "data_uri": "s3://bkt/incoming", "registry_uri": "s3://bkt/registry", "model_name": "spira",
        "overrides": {"training.epochs": 3},
    }
    (trig,) = retrain.triggers
    assert T.trigger_as_yaml(trig) == T.trigger_as_yaml(T.retrain_trigger("bkt", "incoming", 8))
    assert retrain.concurrency_limit == 1
    assert retrain.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
    assert "data_uri" not in evaluate.parameters and evaluate.parameters["model_ref"] == "spira@champion"
    assert rollback.parameters == {"registry_uri": "s3://bkt/registry", "model_name": "spira"}
    assert not evaluate.triggers and not rollback.triggers


def test_serve_watch_rules() -> None:
    from deployments.serve import build_deployments

    narrower = build_deployments("s3://bkt/data", "s3://bkt/reg", watch="s3://bkt/data/new", settle_seconds=5)[0]
    assert narrower.triggers[0].match.root["prefect.resource.id"] == "s3://bkt/data/new/*"
    with pytest.raises(ValueError, match="outside --data-uri"):
        build_deployments("s3://bkt/data", "s3://bkt/reg", watch="s3://bkt/data2")
    with pytest.raises(ValueError, match="would trigger another retrain"):
        build_deployments("s3://bkt/data", "s3://bkt/data/registry")
    assert build_deployments("s3://bkt/data", "s3://bkt/data-registry")[0].triggers
    with pytest.raises(ValueError, match="nothing to watch"):
        build_deployments("/srv/data", "/srv/reg")
    on_demand = build_deployments("/srv/data", "/srv/reg", trigger=False)[0]
    assert not on_demand.triggers and on_demand.concurrency_limit == 1


def test_serve_refuses_without_a_prefect_server(capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.serve import main

    with temporary_settings(updates={PREFECT_API_URL: None}):
        assert main(["--data-uri", "s3://b/x", "--registry-uri", "s3://b/r"]) == 2
    assert "PREFECT_API_URL is not set" in capsys.readouterr().err


def test_serve_rejects_a_bad_override_before_serving(capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.serve import main

    # An unreachable URL is fine: the config is checked before anything is contacted.
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert main(["--data-uri", "s3://b/x", "--registry-uri", "s3://b/r", "--set", "training.epochs=-3"]) == 2
        assert main(["--data-uri", "s3://b/x", "--registry-uri", "s3://b/r", "--watch", "s3://other/x"]) == 2
    err = capsys.readouterr().err
    assert "training.epochs" in err and "outside --data-uri" in err


def test_inbox_location_is_optional_and_may_not_overlap() -> None:
    assert T.inbox_location(env={}) == {"uri": None, "pattern": T.NO_INBOX, "enabled": False}
    env = {"SPIRA_INBOX_URI": "s3://raw/inbox", "SPIRA_DATA_URI": "s3://raw/incoming", "SPIRA_REGISTRY_URI": "s3://models/reg"}
    assert T.inbox_location(env=env) == {"uri": "s3://raw/inbox", "pattern": "s3://raw/inbox/*", "enabled": True}
    with pytest.raises(ValueError, match="overlaps SPIRA_DATA_URI"):
        T.inbox_location(env={**env, "SPIRA_INBOX_URI": "s3://raw/incoming/inbox"})
    with pytest.raises(ValueError, match="must not end with '/'"):
        T.inbox_location(env={**env, "SPIRA_INBOX_URI": "s3://raw/inbox/"})


def test_serve_adds_the_scoring_deployment_for_an_inbox() -> None:
    from deployments.serve import build_deployments

    deps = build_deployments("s3://bkt/data", "s3://bkt/reg", settle_seconds=5, inbox="s3://bkt/inbox/")
    assert [d.flow_name for d in deps] == ["spira-retrain", "spira-evaluate-champion", "spira-rollback", "spira-score"]
    score = deps[-1]
    assert score.parameters["inbox_uri"] == "s3://bkt/inbox" and "data_uri" not in score.parameters
    assert score.triggers[0].match.root == {"prefect.resource.id": "s3://bkt/inbox/*"}
    assert score.triggers[0].name == "spira-score-on-upload"
    with pytest.raises(ValueError, match="overlaps"):
        build_deployments("s3://bkt/data", "s3://bkt/reg", settle_seconds=5, inbox="s3://bkt/data/inbox")
