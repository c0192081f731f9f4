"""`spira doctor`: check a production setup before deploying, and say how to fix each missing piece.

It reads the same environment as ``prefect deploy``, the bridge and the
worker (see the README's "Environment variables") and checks, in order:

* environment: ``SPIRA_*``, AWS and Prefect variables, which are set and whether
  the values make sense (the same rules as ``prefect deploy``);
* storage: credentials, the S3 endpoint, the data and registry buckets;
* queue: the data bucket's ``s3:ObjectCreated`` notification, the queue it
  targets (and ``--queue-url``, the bridge's queue, being that one);
* prefect: the server answers, the work pool exists with the right type (and,
  for ``gpu``, the ``container_create_kwargs`` variable that carries the GPU
  request), a worker is online, the deployments point at these URIs, and the
  upload trigger is enabled.

Each check ends ``ok``, ``FAIL`` (nothing will train until it is fixed),
``todo`` (a later setup step not done yet) or ``info``; every non-ok line
carries the command that fixes it. The exit status is 1 when anything failed.
Nothing is changed: the doctor only reads.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional

import typer

# Prefect and boto3 are imported inside the checks: registering this command
# must not slow down or burden the core commands of `spira`.
SETTLE_ENV = "SPIRA_SETTLE_SECONDS"  # deployments.triggers.SETTLE_ENV (a test checks they agree)

OK, FAIL, TODO, INFO = "ok", "FAIL", "todo", "info"
FLOWS = ("spira-retrain", "spira-evaluate-champion", "spira-rollback")
POOLS = {"local": ("spira-local", "process"), "gpu": ("spira-gpu", "docker")}
EXAMPLE = {"SPIRA_DATA_URI": "s3://spira-raw/incoming", "SPIRA_REGISTRY_URI": "s3://spira-models/registry",
           "SPIRA_IMAGE": "registry.example.org/spira-ct:0.1.0"}

# Variable -> the processes that need it (printed by the doctor, mirrored in the README).
VARIABLES: dict[str, str] = {
    "SPIRA_DATA_URI": "prefect deploy, spira doctor",
    "SPIRA_REGISTRY_URI": "prefect deploy, spira doctor",
    "SPIRA_IMAGE": "prefect deploy (gpu)",
    SETTLE_ENV: "prefect deploy (optional, default 600)",
    "SPIRA_CONFIG": "prefect deploy (optional config file of the runs)",
    "SPIRA_S3_ENDPOINT_URL": "bridge, worker, spira (MinIO/moto only)",
    "SPIRA_SQS_ENDPOINT_URL": "bridge, spira doctor (moto only)",
    "AWS_ENDPOINT_URL": "fallback for both endpoints",
    "AWS_ACCESS_KEY_ID": "bridge, worker, spira (or a profile / instance role)",
    "AWS_SECRET_ACCESS_KEY": "bridge, worker, spira",
    "AWS_SESSION_TOKEN": "with temporary credentials",
    "AWS_PROFILE": "instead of the key pair",
    "AWS_DEFAULT_REGION": "bridge, worker, spira (default us-east-1)",
    "PREFECT_API_URL": "deploy, worker, bridge, serve, prefect CLI",
}
SECRET = ("SECRET", "TOKEN", "KEY_ID", "API_KEY")


@dataclass
class Check:
    area: str
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Setup:
    """What the doctor checks against, from the environment and the command line."""

    target: str
    env: Mapping[str, str]
    queue_url: Optional[str] = None
    checks: list[Check] = field(default_factory=list)

    def get(self, name: str) -> str:
        return (self.env.get(name) or "").strip()

    @property
    def s3_endpoint(self) -> str:
        return self.get("SPIRA_S3_ENDPOINT_URL") or self.get("AWS_ENDPOINT_URL")

    @property
    def sqs_endpoint(self) -> str:
        return self.get("SPIRA_SQS_ENDPOINT_URL") or self.get("AWS_ENDPOINT_URL")

    @property
    def region(self) -> str:
        return self.get("AWS_DEFAULT_REGION") or self.get("AWS_REGION") or "us-east-1"

    def add(self, area: str, name: str, status: str, detail: str, fix: str = "") -> Check:
        check = Check(area, name, status, detail, fix)
        self.checks.append(check)
        return check

    def aws(self, service: str, *args: str) -> str:
        """An aws CLI command line, with --endpoint-url when an endpoint override is set."""
        endpoint = self.s3_endpoint if service in ("s3", "s3api") else self.sqs_endpoint
        extra = ["--endpoint-url", endpoint] if endpoint else []
        return shlex.join(["aws", *extra, service, *args])


# ------------------------------------------------------------------ environment


def check_environment(st: Setup) -> bool:
    """Variables and their values; returns whether the two URIs are usable for the storage checks."""
    from deployments.triggers import require_env, run_config, settle_window

    names = ["SPIRA_DATA_URI", "SPIRA_REGISTRY_URI"] + (["SPIRA_IMAGE"] if st.target == "gpu" else [])
    uris_ok = False
    try:  # the very rules `prefect deploy` applies (deployments/triggers.py)
        require_env(names, st.env)
        for uri in ("SPIRA_DATA_URI", "SPIRA_REGISTRY_URI"):
            if not st.get(uri).startswith("s3://"):
                raise ValueError(f"{uri}={st.get(uri)!r} is not an s3://bucket/prefix URI (the trigger watches S3)")
        uris_ok = True
        st.add("environment", "deploy variables", OK, f"{', '.join(names)} set")
    except ValueError as exc:
        missing = [n for n in names if not st.get(n)]
        fix = "export " + " ".join(f"{n}={EXAMPLE[n]}" for n in missing) if missing else "correct the value named above"
        st.add("environment", "deploy variables", FAIL, str(exc), fix)
    try:
        st.add("environment", "upload window", OK, f"{settle_window(env=st.env)['seconds']} s ({SETTLE_ENV} or the default)")
    except ValueError as exc:
        st.add("environment", "upload window", FAIL, str(exc), f"export {SETTLE_ENV}=600   # or unset it")
    try:
        path = run_config(env=st.env)["path"]
        st.add("environment", "runs' config", OK, path or "built-in defaults (SPIRA_CONFIG unset)")
    except ValueError as exc:
        st.add("environment", "runs' config", FAIL, str(exc), "export SPIRA_CONFIG=configs/fast.yaml   # an existing file, or unset it")
    if not st.get("PREFECT_API_URL"):
        st.add("environment", "PREFECT_API_URL", FAIL,
               "not set: prefect deploy, the worker and the bridge would each start a throwaway server",
               "prefect server start   # then, in every shell: export PREFECT_API_URL=http://127.0.0.1:4200/api")
    if st.s3_endpoint and not st.sqs_endpoint:
        st.add("environment", "endpoints", FAIL,
               f"S3 goes to {st.s3_endpoint} but SQS to AWS itself: the bridge would read a different queue",
               f"export SPIRA_SQS_ENDPOINT_URL={st.s3_endpoint}   # moto serves S3 and SQS on one port")
    return uris_ok


# ------------------------------------------------------------------ storage and queue


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def check_storage(st: Setup, s3: Any, credentials: Any) -> bool:
    """Credentials, endpoint and buckets; returns whether the data bucket is reachable."""
    import botocore.exceptions as bexc

    where = st.s3_endpoint or f"AWS ({st.region})"
    if credentials is None:
        st.add("storage", "AWS credentials", FAIL, "none found (environment, ~/.aws, instance role)",
               "export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...   # moto accepts any pair, e.g. testing/testing")
        return False
    st.add("storage", "AWS credentials", OK, f"found ({getattr(credentials, 'method', 'unknown source')})")
    data_ok = False
    for role in ("SPIRA_DATA_URI", "SPIRA_REGISTRY_URI"):
        uri = st.get(role)
        if not uri.startswith("s3://"):
            continue
        bucket = uri.removeprefix("s3://").partition("/")[0]
        try:
            s3.head_bucket(Bucket=bucket)
        except bexc.EndpointConnectionError:
            st.add("storage", "S3 endpoint", FAIL, f"cannot connect to {where}",
                   "start the S3 server (e.g. moto_server -H 127.0.0.1 -p 5000) or export SPIRA_S3_ENDPOINT_URL=http://HOST:PORT")
            return False
        except bexc.NoCredentialsError as exc:
            st.add("storage", "AWS credentials", FAIL, str(exc), "export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...")
            return False
        except bexc.ClientError as exc:
            code = _error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                st.add("storage", f"bucket {bucket}", FAIL, f"does not exist at {where} ({role})", st.aws("s3", "mb", f"s3://{bucket}"))
            else:
                st.add("storage", f"bucket {bucket}", FAIL, f"{where} answered {code or exc} for {bucket} ({role})",
                       "check the credentials' permissions (s3:ListBucket, s3:GetObject, s3:PutObject)")
            continue
        st.add("storage", f"bucket {bucket}", OK, f"exists at {where} ({role})")
        data_ok = data_ok or role == "SPIRA_DATA_URI"
    return data_ok


def _notification_fix(st: Setup, bucket: str, prefix: str, queue_arn: str) -> str:
    conf: dict[str, Any] = {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}
    if prefix:
        conf["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix + "/"}]}}
    return st.aws("s3api", "put-bucket-notification-configuration", "--bucket", bucket,
                  "--notification-configuration", json.dumps({"QueueConfigurations": [conf]}))


def _covers(conf: Mapping[str, Any], prefix: str) -> bool:
    """The configuration notifies object creation for every key under ``prefix``."""
    if not any(e.startswith("s3:ObjectCreated:") for e in conf.get("Events", [])):
        return False
    rules = {r.get("Name", "").lower(): r.get("Value", "") for r in conf.get("Filter", {}).get("Key", {}).get("FilterRules", [])}
    return not rules.get("suffix") and (prefix + "/").startswith(rules.get("prefix", ""))


def _queue_arn(sqs: Any, queue_url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def check_queue(st: Setup, s3: Any, sqs: Any) -> Optional[str]:
    """The data bucket's notification and its queue; returns the queue URL the bridge should read."""
    import botocore.exceptions as bexc

    bucket, _, prefix = st.get("SPIRA_DATA_URI").removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    given_arn = None
    if st.queue_url:
        try:
            given_arn = _queue_arn(sqs, st.queue_url)
        except (bexc.ClientError, bexc.EndpointConnectionError) as exc:
            st.add("queue", "--queue-url", FAIL, f"{st.queue_url}: {_error_code(exc) or exc}",
                   st.aws("sqs", "create-queue", "--queue-name", st.queue_url.rstrip("/").rsplit("/", 1)[-1]))
    configs = s3.get_bucket_notification_configuration(Bucket=bucket).get("QueueConfigurations", [])
    matching = [c for c in configs if _covers(c, prefix)]
    arn_hint = given_arn or "arn:aws:sqs:REGION:ACCOUNT:QUEUE"
    if not matching:
        hint = "" if given_arn else " (run with --queue-url URL to get the command with your queue's ARN)"
        st.add("queue", f"notification on {bucket}", FAIL,
               f"no s3:ObjectCreated notification to an SQS queue covers {st.get('SPIRA_DATA_URI')}/{hint}",
               _notification_fix(st, bucket, prefix, arn_hint))
        return st.queue_url if given_arn else None
    arns = [c["QueueArn"] for c in matching]
    if given_arn and given_arn not in arns:
        st.add("queue", f"notification on {bucket}", FAIL,
               f"the bucket notifies {', '.join(arns)}, but --queue-url is {given_arn}: the bridge would wait forever",
               _notification_fix(st, bucket, prefix, given_arn))
        return st.queue_url
    arn = given_arn or arns[0]
    st.add("queue", f"notification on {bucket}", OK, f"s3:ObjectCreated under {prefix or '(whole bucket)'}/ -> {arn}")
    _, _, _, _, account, name = arn.split(":", 5)
    try:
        queue_url = st.queue_url if given_arn else sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    except bexc.ClientError as exc:
        st.add("queue", f"queue {name}", FAIL, f"the notification's queue is missing ({_error_code(exc)})",
               st.aws("sqs", "create-queue", "--queue-name", name))
        return None
    waiting = attrs.get("ApproximateNumberOfMessages", "?")
    st.add("queue", f"queue {name}", OK, f"{queue_url} ({waiting} message(s) waiting for the bridge)")
    if not st.sqs_endpoint and "s3.amazonaws.com" not in attrs.get("Policy", ""):
        st.add("queue", f"queue {name} policy", FAIL, "no statement lets s3.amazonaws.com send messages to it",
               "add a policy allowing sqs:SendMessage for Principal {\"Service\": \"s3.amazonaws.com\"} "
               f"with aws:SourceArn arn:aws:s3:::{bucket}: " + st.aws("sqs", "set-queue-attributes", "--queue-url", queue_url,
                                                                     "--attributes", "file://policy.json"))
    return queue_url


# ------------------------------------------------------------------ prefect


def check_prefect(st: Setup, prefect: Any) -> None:
    api = st.get("PREFECT_API_URL")
    if not api:
        return
    problem = prefect.health()
    if problem:
        st.add("prefect", "server", FAIL, f"{api} does not answer: {problem}",
               "prefect server start   # or correct PREFECT_API_URL")
        return
    st.add("prefect", "server", OK, f"{api} answers")
    pool, kind = POOLS[st.target]
    _check_pool(st, prefect, pool, kind)
    retrain = None
    for flow in FLOWS:
        dep = prefect.deployment(f"{flow}/{st.target}")
        if dep is None:
            st.add("prefect", f"{flow}/{st.target}", TODO, "not deployed yet", f"prefect --no-prompt deploy --name {st.target}")
            continue
        params = dep["parameters"]
        wrong = [f"{k}={params[k]}" for k, var in (("data_uri", "SPIRA_DATA_URI"), ("registry_uri", "SPIRA_REGISTRY_URI"))
                 if k in params and params[k] != st.get(var)]
        if dep["work_pool_name"] != pool:
            wrong.append(f"pool {dep['work_pool_name']}")
        if wrong:
            st.add("prefect", f"{flow}/{st.target}", FAIL, f"deployed with {', '.join(wrong)}, not what the environment says",
                   f"prefect --no-prompt deploy --name {st.target}")
        else:
            st.add("prefect", f"{flow}/{st.target}", OK, f"deployed to pool {pool}")
        retrain = dep if flow == "spira-retrain" else retrain
    if retrain is not None:
        _check_trigger(st, prefect, retrain)


def _check_pool(st: Setup, prefect: Any, pool: str, kind: str) -> None:
    found = prefect.work_pool(pool)
    trap = ("pip install prefect-docker==0.7.4 && prefect work-pool get-default-base-job-template --type docker -f docker-template.json"
            f" && prefect work-pool create {pool} --type docker --base-job-template docker-template.json --overwrite")
    create = trap if kind == "docker" else f"prefect work-pool create {pool} --type {kind}"
    if found is None:
        st.add("prefect", f"work pool {pool}", FAIL, "does not exist: deployed runs would wait forever", create)
        return
    if found["type"] != kind:
        st.add("prefect", f"work pool {pool}", FAIL, f"has type {found['type']!r}, not {kind!r}",
               f"prefect work-pool delete {pool} && {create}")
        return
    if kind == "docker" and "container_create_kwargs" not in found["variables"]:
        st.add("prefect", f"work pool {pool}", FAIL,
               "its template has no container_create_kwargs variable: the GPU request would be dropped", trap)
        return
    st.add("prefect", f"work pool {pool}", OK, f"type {kind}" + (", template passes container_create_kwargs" if kind == "docker" else ""))
    online = prefect.online_workers(pool)
    if online:
        st.add("prefect", f"worker on {pool}", OK, f"{online} online")
    else:
        where = " --type docker   # on the GPU host" if kind == "docker" else "   # from the repository root, with the AWS variables"
        st.add("prefect", f"worker on {pool}", TODO, "none online: runs would stay Scheduled", f"prefect worker start --pool {pool}{where}")


def _check_trigger(st: Setup, prefect: Any, retrain: Mapping[str, Any]) -> None:
    from deployments.triggers import LOCAL_TRIGGER_NAME, TRIGGER_NAME

    # The retrain-on-drift automation (spira.drift.detected; off by default) is not the upload trigger.
    autos = [a for a in prefect.automations(retrain["id"]) if "spira.drift.detected" not in a.get("expect", ())]
    name = LOCAL_TRIGGER_NAME if st.target == "local" else TRIGGER_NAME
    if not autos:
        st.add("prefect", "upload trigger", FAIL, f"spira-retrain/{st.target} has no automation",
               f"prefect --no-prompt deploy --name {st.target}")
        return
    for auto in autos:
        detail = f"{auto['name']}: watches {auto['match']}, window {auto['within']:g} s"
        if auto["match"] != st.get("SPIRA_DATA_URI") + "/*":
            st.add("prefect", "upload trigger", FAIL, detail + " (not SPIRA_DATA_URI)", f"prefect --no-prompt deploy --name {st.target}")
        elif not auto["enabled"]:
            st.add("prefect", "upload trigger", TODO, detail + "; disabled (deployed so on purpose for local)",
                   f"prefect automation resume {shlex.quote(auto['name'] or name)}")
        else:
            st.add("prefect", "upload trigger", OK, detail + "; enabled")


class PrefectProbe:
    """Read-only views of the Prefect server at ``api_url`` (never an ephemeral one)."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")

    @contextlib.contextmanager
    def _client(self) -> Iterator[Any]:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as client:
            yield client

    def health(self) -> Optional[str]:
        import httpx

        try:
            resp = httpx.get(f"{self.api_url}/health", timeout=5, trust_env=False)
        except httpx.HTTPError as exc:
            return str(exc) or type(exc).__name__
        return None if resp.status_code == 200 else f"HTTP {resp.status_code}"

    def _read(self, method: str, *args: Any) -> Any:
        """``client.<method>(*args)``, or None when the server has no such object."""
        from prefect.exceptions import ObjectNotFound

        with self._client() as client:
            try:
                return getattr(client, method)(*args)
            except ObjectNotFound:
                return None

    def work_pool(self, name: str) -> Optional[dict[str, Any]]:
        pool = self._read("read_work_pool", name)
        if pool is None:
            return None
        props = (pool.base_job_template or {}).get("variables", {}).get("properties", {})
        return {"type": pool.type, "variables": sorted(props)}

    def online_workers(self, pool: str) -> int:
        workers = self._read("read_workers_for_work_pool", pool) or []
        return sum(1 for w in workers if str(getattr(w.status, "value", w.status)).upper() == "ONLINE")

    def deployment(self, name: str) -> Optional[dict[str, Any]]:
        dep = self._read("read_deployment_by_name", name)
        if dep is None:
            return None
        return {"id": dep.id, "parameters": dict(dep.parameters or {}), "work_pool_name": dep.work_pool_name}

    def automations(self, deployment_id: Any) -> list[dict[str, Any]]:
        with self._client() as client:
            autos = client.read_resource_related_automations(f"prefect.deployment.{deployment_id}")
        out = []
        for a in autos:
            trig = a.trigger
            match = dict(getattr(getattr(trig, "match", None), "root", {}) or {}).get("prefect.resource.id", "")
            within = getattr(trig, "within", None)
            out.append({"name": a.name, "enabled": a.enabled, "match": match, "expect": sorted(getattr(trig, "expect", None) or ()),
                        "within": within.total_seconds() if within is not None else 0.0})
        return out


# ------------------------------------------------------------------ running and printing


def aws_clients(st: Setup) -> tuple[Any, Any, Any]:
    """(s3, sqs, credentials) built like the bridge's and the flows', with short timeouts."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=st.region)
    config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1})
    s3_config = config.merge(Config(s3={"addressing_style": "path"})) if st.s3_endpoint else config
    s3 = session.client("s3", endpoint_url=st.s3_endpoint or None, config=s3_config)
    sqs = session.client("sqs", endpoint_url=st.sqs_endpoint or None, config=config)
    return s3, sqs, session.get_credentials()


def bridge_command(st: Setup, queue: str) -> str:
    """The bridge's command line: the data folder, and the inbox's too when ``SPIRA_INBOX_URI`` is on S3."""
    uris = [st.get("SPIRA_DATA_URI")] + ([st.get("SPIRA_INBOX_URI")] if st.get("SPIRA_INBOX_URI").startswith("s3://") else [])
    places = [uri.removeprefix("s3://").partition("/")[::2] for uri in uris]
    buckets = list(dict.fromkeys(bucket for bucket, _ in places))
    prefixes = list(dict.fromkeys(prefix.strip("/") for _, prefix in places))
    if "" in prefixes:  # a whole bucket is watched: one --prefix '' (the bridge refuses it beside a folder)
        prefixes = [""]
    args = ["spira", "s3-bridge", "--queue-url", queue]
    args += [a for bucket in buckets for a in ("--bucket", bucket)]
    args += [a for prefix in prefixes for a in ("--prefix", prefix)]
    return shlex.join(args)


def run_checks(
    target: str,
    env: Mapping[str, str],
    queue_url: Optional[str] = None,
    *,
    clients: Optional[Callable[[Setup], tuple[Any, Any, Any]]] = None,
    probe: Optional[Callable[[str], Any]] = None,
) -> list[Check]:
    st = Setup(target, env, queue_url)
    if check_environment(st):
        s3, sqs, credentials = (clients or aws_clients)(st)
        if check_storage(st, s3, credentials):
            queue = check_queue(st, s3, sqs)
            if queue:
                st.add("queue", "bridge", INFO, "run it as a service (the doctor cannot see it)", bridge_command(st, queue))
    if st.get("PREFECT_API_URL"):
        check_prefect(st, (probe or PrefectProbe)(st.get("PREFECT_API_URL")))
    return st.checks


def render(checks: list[Check]) -> str:
    lines, area = [], None
    for c in checks:
        if c.area != area:
            area = c.area
            lines.append(area)
        lines.append(f"  {c.status:4s}  {c.name}: {c.detail}")
        if c.fix:
            lines.append(f"        {'run' if c.status == INFO else 'fix'}: {c.fix}")
    failed = sum(c.status == FAIL for c in checks)
    todo = sum(c.status == TODO for c in checks)
    lines.append(f"{failed} problem(s), {todo} step(s) to do" + ("; fix them in order, then run spira doctor again" if failed else ""))
    return "\n".join(lines)


def variables(env: Mapping[str, str]) -> dict[str, str]:
    """Each known variable's value as shown to the user: secrets as '(set)', unset as '-'."""
    out = {}
    for name in VARIABLES:
        value = (env.get(name) or "").strip()
        out[name] = ("(set)" if any(s in name for s in SECRET) else value) if value else "-"
    return out


def variables_table(env: Mapping[str, str]) -> str:
    shown = variables(env)
    return "variables\n" + "\n".join(f"  {n:24s} {shown[n]:40s} {VARIABLES[n]}" for n in VARIABLES)


def doctor(
    target: str = typer.Option("local", "--target", help="Which prefect.yaml target to check: local or gpu."),
    queue_url: Optional[str] = typer.Option(None, "--queue-url", help="The queue the bridge reads (default: the one the bucket notifies)."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check the production setup (variables, S3, queue, Prefect server, pool, deployments) and print each fix."""
    if target not in POOLS:
        typer.secho(f"error: --target must be local or gpu, got {target!r}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    checks = run_checks(target, dict(os.environ), queue_url)
    if as_json:
        typer.echo(json.dumps({"target": target, "variables": variables(os.environ), "checks": [asdict(c) for c in checks]}, indent=1))
    else:
        typer.echo(f"spira doctor: target {target}\n" + variables_table(os.environ) + "\n" + render(checks))
    raise typer.Exit(1 if any(c.status == FAIL for c in checks) else 0)
