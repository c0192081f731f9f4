"""`spira doctor` finds each missing piece of a production setup and names the command that fixes it.

S3 and SQS are moto's in-process mocks; the Prefect server is a fake probe
(the real ones are exercised by tests/e2e/test_worker_path.py).
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Optional

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from spira_cli import doctor as D

AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
BASE = {"SPIRA_DATA_URI": "s3://spira-raw/incoming", "SPIRA_REGISTRY_URI": "s3://spira-models/registry", **AWS}
MOCK_RESOURCE = "http://moto.invalid:5000"  # shown in fixes; the mocked clients never contact it


def by_name(checks: list[D.Check]) -> dict[str, D.Check]:
    return {c.name: c for c in checks}


def statuses(checks: list[D.Check]) -> set[str]:
    return {c.status for c in checks}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    """Mocked S3 + SQS, and a factory giving the doctor clients bound to them."""
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "SPIRA_S3_ENDPOINT_URL", "SPIRA_SQS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        s3, sqs = session.client("s3"), session.client("sqs")

        def clients(_setup: D.Setup):
            return s3, sqs, session.get_credentials()

        yield s3, sqs, clients


def wire(s3: Any, sqs: Any, *, prefix: Optional[str] = "incoming/", queue: str = "spira-uploads") -> str:
    """Buckets, a queue and the data bucket's notification to it; returns the queue URL."""
    for bucket in ("spira-raw", "spira-models"):
        s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    conf: dict[str, Any] = {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}
    if prefix is not None:
        conf["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
    s3.put_bucket_notification_configuration(Bucket="spira-raw", NotificationConfiguration={"QueueConfigurations": [conf]})
    return url


class FakePrefect:
    """What PrefectProbe reads from a server, as plain data a test can shape."""

    def __init__(self, *, healthy: bool = True, pool: Optional[dict] = None, workers: int = 1,
                 deployments: Optional[dict] = None, automations: Optional[list] = None) -> None:
        self.healthy, self.pool, self.workers = healthy, pool, workers
        self.deployments = deployments or {}
        self.autos = automations or []

    def health(self) -> Optional[str]:
        return None if self.healthy else "[Errno 111] Connection refused"

    def work_pool(self, name: str) -> Optional[dict]:
        return self.pool

    def online_workers(self, pool: str) -> int:
        return self.workers

    def deployment(self, name: str) -> Optional[dict]:
        return self.deployments.get(name)

    def automations(self, deployment_id: Any) -> list[dict]:
        return self.autos


def deployed(target: str = "local", data_uri: str = BASE["SPIRA_DATA_URI"], pool: str = "spira-local") -> dict:
    out = {}
    for flow in D.FLOWS:
        params = {"registry_uri": BASE["SPIRA_REGISTRY_URI"]}
        if flow == "spira-retrain":
            params["data_uri"] = data_uri
        out[f"{flow}/{target}"] = {"id": uuid.uuid4(), "parameters": params, "work_pool_name": pool}
    return out


def automation(enabled: bool, match: str = BASE["SPIRA_DATA_URI"] + "/*", name: str = "spira-retrain-on-upload-local") -> dict:
    return {"name": name, "enabled": enabled, "match": match, "within": 600.0}


# ------------------------------------------------------------------ environment


def test_nothing_set_names_the_variables_and_how_to_set_them() -> None:
    checks = D.run_checks("local", {})
    found = by_name(checks)
    assert found["deploy variables"].status == D.FAIL
    assert found["deploy variables"].fix == "export SPIRA_DATA_URI=s3://spira-raw/incoming SPIRA_REGISTRY_URI=s3://spira-models/registry"
    assert found["PREFECT_API_URL"].status == D.FAIL and "prefect server start" in found["PREFECT_API_URL"].fix
    # Nothing else can be checked without them (and no server is contacted).
    assert {c.area for c in checks} == {"environment"}


@pytest.mark.parametrize("env, message", [
    ({"SPIRA_REGISTRY_URI": "s3://spira-raw/incoming/models"}, "lies inside the watched SPIRA_DATA_URI"),
    ({"SPIRA_DATA_URI": "s3://spira-raw/incoming/"}, "must not end with '/'"),
    ({"SPIRA_DATA_URI": "/srv/data"}, "is not an s3://bucket/prefix URI"),
])
def test_bad_values_fail_with_the_rule_prefect_deploy_applies(env: dict, message: str) -> None:
    checks = D.run_checks("local", {**BASE, **env}, clients=lambda _s: pytest.fail("no storage check on bad URIs"))
    found = by_name(checks)["deploy variables"]
    assert found.status == D.FAIL and message in found.detail and found.fix == "correct the value named above"


def test_a_bad_window_fails_on_its_own(aws) -> None:
    checks = by_name(D.run_checks("local", {**BASE, "SPIRA_SETTLE_SECONDS": "0"}, clients=aws[2]))
    assert checks["deploy variables"].status == D.OK
    assert checks["upload window"].status == D.FAIL
    assert "SPIRA_SETTLE_SECONDS='0' must be a positive whole number" in checks["upload window"].detail
    assert "bucket spira-raw" in checks  # the storage checks still ran
    bad_config = by_name(D.run_checks("local", {**BASE, "SPIRA_CONFIG": "missing.yaml"}, clients=aws[2]))["runs' config"]
    assert bad_config.status == D.FAIL and "config file missing.yaml does not exist" in bad_config.detail


def test_gpu_target_needs_the_image_and_reports_the_window() -> None:
    found = by_name(D.run_checks("gpu", {"SPIRA_DATA_URI": "/x", "SPIRA_REGISTRY_URI": "/y"}))["deploy variables"]
    assert found.status == D.FAIL and found.fix == "export SPIRA_IMAGE=registry.example.org/spira-ct:0.1.0"
    ok = by_name(D.run_checks("gpu", {**BASE, "SPIRA_IMAGE": "img:1", "SPIRA_SETTLE_SECONDS": "120"}, clients=lambda _s: (None, None, None)))
    assert ok["deploy variables"].status == D.OK and ok["upload window"].detail.startswith("120 s")


def test_an_s3_endpoint_without_an_sqs_endpoint_is_reported(aws) -> None:
    _, _, clients = aws
    found = by_name(D.run_checks("local", {**BASE, "SPIRA_S3_ENDPOINT_URL": MOCK_RESOURCE}, clients=clients))["endpoints"]
    assert found.status == D.FAIL and found.fix.startswith(f"export SPIRA_SQS_ENDPOINT_URL={MOCK_RESOURCE}")


def test_variables_are_listed_with_secrets_masked() -> None:
    from deployments.triggers import SETTLE_ENV

    assert D.SETTLE_ENV == SETTLE_ENV
    shown = D.variables({**BASE, "AWS_SESSION_TOKEN": "tok", "PREFECT_API_URL": "http://127.0.0.1:4200/api"})
    assert shown["SPIRA_DATA_URI"] == "s3://spira-raw/incoming" and shown["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    assert shown["AWS_ACCESS_KEY_ID"] == shown["AWS_SECRET_ACCESS_KEY"] == shown["AWS_SESSION_TOKEN"] == "(set)"
    assert shown["SPIRA_S3_ENDPOINT_URL"] == "-"
    assert "testing" not in D.variables_table(BASE)


# ------------------------------------------------------------------ storage and queue


def test_missing_buckets_and_credentials(aws) -> None:
    s3, sqs, clients = aws
    found = by_name(D.run_checks("local", BASE, clients=clients))
    assert found["AWS credentials"].status == D.OK
    assert found["bucket spira-raw"].status == D.FAIL and found["bucket spira-raw"].fix == "aws s3 mb s3://spira-raw"
    assert found["bucket spira-models"].status == D.FAIL
    assert "notification on spira-raw" not in found  # nothing to inspect on a missing bucket

    # With an endpoint override the fix carries it.
    st = D.Setup("local", {**BASE, "SPIRA_S3_ENDPOINT_URL": MOCK_RESOURCE})
    D.check_storage(st, s3, object())
    assert st.checks[-1].fix == f"aws --endpoint-url {MOCK_RESOURCE} s3 mb s3://spira-models"
    none = D.Setup("local", BASE)
    assert D.check_storage(none, s3, None) is False
    assert none.checks[0].status == D.FAIL and "AWS_ACCESS_KEY_ID" in none.checks[0].fix


def test_an_unreachable_endpoint_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**BASE, "SPIRA_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}", "SPIRA_SQS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    st = D.Setup("local", env)
    s3, _, _ = D.aws_clients(st)
    assert D.check_storage(st, s3, object()) is False
    assert st.checks[-1].name == "S3 endpoint" and f"cannot connect to http://127.0.0.1:{port}" in st.checks[-1].detail


def test_no_notification_gives_the_command_with_the_bridge_queue(aws) -> None:
    s3, sqs, clients = aws
    url = wire(s3, sqs)
    s3.put_bucket_notification_configuration(Bucket="spira-raw", NotificationConfiguration={})
    found = by_name(D.run_checks("local", BASE, url, clients=clients))["notification on spira-raw"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert found.status == D.FAIL
    assert found.fix.startswith("aws s3api put-bucket-notification-configuration --bucket spira-raw")
    conf = json.loads(found.fix.split("--notification-configuration ", 1)[1].strip("'"))
    assert conf == {"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
                                             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}}}]}


@pytest.mark.parametrize("prefix, covered", [("incoming/", True), (None, True), ("inc", True),
                                             ("other/", False), ("incoming/hospital_a/", False)])
def test_notification_must_cover_the_whole_watched_prefix(aws, prefix: Optional[str], covered: bool) -> None:
    s3, sqs, clients = aws
    wire(s3, sqs, prefix=prefix)
    checks = D.run_checks("local", BASE, clients=clients)
    assert (by_name(checks)["notification on spira-raw"].status == D.OK) is covered


def test_the_bridge_queue_must_be_the_notified_one(aws) -> None:
    s3, sqs, clients = aws
    wire(s3, sqs)
    other = sqs.create_queue(QueueName="some-other-queue")["QueueUrl"]
    found = by_name(D.run_checks("local", BASE, other, clients=clients))["notification on spira-raw"]
    assert found.status == D.FAIL and "the bridge would wait forever" in found.detail
    assert "some-other-queue" in found.fix


def test_a_complete_storage_setup_is_ok_and_prints_the_bridge_command(aws) -> None:
    s3, sqs, clients = aws
    url = wire(s3, sqs)
    checks = D.run_checks("local", BASE, clients=clients)
    found = by_name(checks)
    assert found["notification on spira-raw"].status == found["queue spira-uploads"].status == D.OK
    assert found["bridge"].fix == f"spira s3-bridge --queue-url {url} --bucket spira-raw --prefix incoming"
    # On AWS itself (no endpoint override) the queue also needs a policy letting S3 send to it.
    assert found["queue spira-uploads policy"].status == D.FAIL
    # With moto/MinIO (an endpoint override) and a ready Prefect side, nothing is left to do.
    ready = FakePrefect(pool={"type": "process", "variables": []}, deployments=deployed(), automations=[automation(True)])
    moto_like = D.run_checks("local", {**BASE, "AWS_ENDPOINT_URL": MOCK_RESOURCE, "PREFECT_API_URL": "http://127.0.0.1:4200/api"},
                             clients=clients, probe=lambda _url: ready)
    assert "queue spira-uploads policy" not in by_name(moto_like)
    assert statuses(moto_like) == {D.OK, D.INFO}, [c for c in moto_like if c.status not in (D.OK, D.INFO)]


# ------------------------------------------------------------------ prefect


def prefect_checks(probe: FakePrefect, target: str = "local", **env: str) -> dict[str, D.Check]:
    st = D.Setup(target, {**BASE, "PREFECT_API_URL": "http://127.0.0.1:4200/api", **env})
    D.check_prefect(st, probe)
    return by_name(st.checks)


def test_server_down() -> None:
    found = prefect_checks(FakePrefect(healthy=False))
    assert found["server"].status == D.FAIL and "Connection refused" in found["server"].detail
    assert len(found) == 1


def test_before_deploying_the_pool_and_deploy_steps_are_listed() -> None:
    found = prefect_checks(FakePrefect(pool=None))
    assert found["work pool spira-local"].status == D.FAIL
    assert found["work pool spira-local"].fix == "prefect work-pool create spira-local --type process"
    for flow in D.FLOWS:
        assert found[f"{flow}/local"].status == D.TODO and found[f"{flow}/local"].fix == "prefect --no-prompt deploy --name local"


def test_gpu_pool_without_the_docker_template_is_the_trap() -> None:
    found = prefect_checks(FakePrefect(pool={"type": "docker", "variables": ["image", "env", "volumes"]}), "gpu")
    assert found["work pool spira-gpu"].status == D.FAIL
    assert "container_create_kwargs" in found["work pool spira-gpu"].detail
    assert "pip install prefect-docker==0.7.4" in found["work pool spira-gpu"].fix
    good = prefect_checks(FakePrefect(pool={"type": "docker", "variables": ["container_create_kwargs", "image"]}, workers=0), "gpu")
    assert good["work pool spira-gpu"].status == D.OK
    assert good["worker on spira-gpu"].status == D.TODO and "--type docker" in good["worker on spira-gpu"].fix
    wrong_type = prefect_checks(FakePrefect(pool={"type": "process", "variables": []}))
    assert wrong_type["work pool spira-local"].status == D.OK
    assert prefect_checks(FakePrefect(pool={"type": "process", "variables": []}), "gpu")["work pool spira-gpu"].status == D.FAIL


def test_local_trigger_deployed_disabled_is_a_step_to_do() -> None:
    probe = FakePrefect(pool={"type": "process", "variables": []}, workers=0, deployments=deployed(), automations=[automation(False)])
    found = prefect_checks(probe)
    assert found["worker on spira-local"].status == D.TODO
    assert found["worker on spira-local"].fix.startswith("prefect worker start --pool spira-local")
    assert found["upload trigger"].status == D.TODO
    assert found["upload trigger"].fix == "prefect automation resume spira-retrain-on-upload-local"
    assert all(found[f"{flow}/local"].status == D.OK for flow in D.FLOWS)


def test_deployments_for_other_data_or_trigger_elsewhere_fail() -> None:
    probe = FakePrefect(pool={"type": "process", "variables": []}, deployments=deployed(data_uri="s3://old/incoming"),
                        automations=[automation(True, match="s3://old/incoming/*")])
    found = prefect_checks(probe)
    assert found["spira-retrain/local"].status == D.FAIL and "data_uri=s3://old/incoming" in found["spira-retrain/local"].detail
    assert found["upload trigger"].status == D.FAIL and "not SPIRA_DATA_URI" in found["upload trigger"].detail
    assert found["spira-rollback/local"].status == D.OK


def test_the_disabled_retrain_on_drift_automation_is_not_taken_for_the_upload_trigger() -> None:
    drift = {"name": "spira-retrain-on-drift-local", "enabled": False, "match": "spira.model.spira.*", "within": 86400.0,
             "expect": ["spira.drift.detected"]}
    probe = FakePrefect(pool={"type": "process", "variables": []}, deployments=deployed(), automations=[automation(True), drift])
    found = prefect_checks(probe)
    assert found["upload trigger"].status == D.OK and "spira-retrain-on-upload-local" in found["upload trigger"].detail


def test_a_ready_local_setup_has_nothing_left() -> None:
    probe = FakePrefect(pool={"type": "process", "variables": []}, deployments=deployed(), automations=[automation(True)])
    found = prefect_checks(probe)
    assert statuses(list(found.values())) == {D.OK}
    assert "window 600 s; enabled" in found["upload trigger"].detail


# ------------------------------------------------------------------ the command


def test_command_exit_status_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from spira_cli.main import app

    for name in list(D.VARIABLES):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    res = runner.invoke(app, ["doctor"])
    assert res.exit_code == 1
    assert "FAIL  deploy variables" in res.output and "fix: export SPIRA_DATA_URI=" in res.output
    assert "1 problem" not in res.output and "2 problem(s)" in res.output
    res = runner.invoke(app, ["doctor", "--json"])
    out = json.loads(res.output)
    assert out["target"] == "local" and out["variables"]["SPIRA_DATA_URI"] == "-"
    assert [(c["name"], c["status"]) for c in out["checks"]] == [
        ("deploy variables", D.FAIL), ("upload window", D.OK), ("runs' config", D.OK), ("PREFECT_API_URL", D.FAIL)]
    assert runner.invoke(app, ["doctor", "--target", "cloud"]).exit_code == 2

    monkeypatch.setattr(D, "run_checks", lambda *a, **k: [D.Check("x", "y", D.TODO, "later", "cmd")])
    res = runner.invoke(app, ["doctor"])
    assert res.exit_code == 0 and "0 problem(s), 1 step(s) to do" in res.output


@pytest.mark.parametrize("inbox, expected", [
    ("s3://spira-raw/inbox", "--bucket spira-raw --prefix incoming --prefix inbox"),
    ("s3://spira-inbox/new", "--bucket spira-raw --bucket spira-inbox --prefix incoming --prefix new"),
    ("s3://spira-inbox", "--bucket spira-raw --bucket spira-inbox --prefix ''"),
    ("", "--bucket spira-raw --prefix incoming"),
])
def test_the_bridge_command_forwards_the_inbox_folder_too(inbox: str, expected: str) -> None:
    import shlex

    from deployments.s3_bridge import bridge_config_from_args

    command = D.bridge_command(D.Setup("local", {**BASE, "SPIRA_INBOX_URI": inbox}), "http://q/1/spira-uploads")
    assert command == f"spira s3-bridge --queue-url http://q/1/spira-uploads {expected}"
    bridge_config_from_args(shlex.split(command)[2:])  # a command line the bridge accepts (exits 2 otherwise)
