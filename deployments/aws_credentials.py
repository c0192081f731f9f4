"""AWS access the Prefect way: credentials from a prefect-aws block, stored (encrypted) by Prefect.

A deployment names a block, never a secret::

    SPIRA_AWS_CREDENTIALS_BLOCK=spira-aws     # an AwsCredentials block
    SPIRA_S3_BUCKET_BLOCK=spira-models         # or an S3Bucket block: its credentials are used

``install_block_credentials()`` loads the block through the Prefect API and
installs it as the S3 adapter's credentials provider
(``spira_lib.adapters.s3.set_credentials_provider``): every S3 (and the
bridge's SQS) client made afterwards in this process uses it. The core never
imports Prefect; it only receives plain settings, in memory. With neither
variable set, nothing changes: the standard AWS chain (instance role,
environment, shared config) applies, as before.

Where it runs:

* the S3 bridge calls it at start-up (``python -m deployments.s3_bridge``);
* a deployment's flow-run process runs it as a pull step, before the flow is
  loaded (``prefect.yaml``)::

      pull:
        - deployments.aws_credentials.pull_step: {}

  (the step reads the block name from the environment, so the job variables
  carry ``SPIRA_AWS_CREDENTIALS_BLOCK: spira-aws`` and no secret).

Create a block once, e.g. ``prefect block register -m prefect_aws`` then in
Python ``AwsCredentials(aws_access_key_id=..., aws_secret_access_key=...,
region_name="sa-east-1").save("spira-aws")`` or in the UI (Blocks → AWS
Credentials).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

from spira_lib.adapters.s3 import set_credentials_provider

log = logging.getLogger("spira.aws_credentials")

CREDENTIALS_BLOCK_ENV = "SPIRA_AWS_CREDENTIALS_BLOCK"
BUCKET_BLOCK_ENV = "SPIRA_S3_BUCKET_BLOCK"


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def settings_from_block(block: Any) -> dict[str, Any]:
    """Plain session settings from an ``AwsCredentials`` or ``MinIOCredentials`` block."""
    if hasattr(block, "minio_root_user"):
        settings = {"aws_access_key_id": block.minio_root_user,
                    "aws_secret_access_key": _secret(block.minio_root_password)}
    else:
        settings = {"aws_access_key_id": block.aws_access_key_id,
                    "aws_secret_access_key": _secret(block.aws_secret_access_key),
                    "aws_session_token": _secret(getattr(block, "aws_session_token", None)),
                    "profile_name": getattr(block, "profile_name", None)}
    settings["region_name"] = getattr(block, "region_name", None)
    params = getattr(block, "aws_client_parameters", None)
    settings["endpoint_url"] = getattr(params, "endpoint_url", None) if params is not None else None
    return {k: v for k, v in settings.items() if v not in (None, "")}


def load_block_settings(env: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any]] | None:
    """(block description, settings) for the block the environment names, or None when it names none."""
    env = os.environ if env is None else env
    name, bucket = env.get(CREDENTIALS_BLOCK_ENV), env.get(BUCKET_BLOCK_ENV)
    if name:
        from prefect_aws import AwsCredentials

        return f"AwsCredentials block {name!r}", settings_from_block(AwsCredentials.load(name))
    if bucket:
        from prefect_aws.s3 import S3Bucket

        return f"S3Bucket block {bucket!r}", settings_from_block(S3Bucket.load(bucket).credentials)
    return None


def install_block_credentials(env: Mapping[str, str] | None = None) -> str | None:
    """Install the named block's credentials for every S3/SQS client of this process; returns what was used.

    A block that cannot be loaded is an error (a typo must not silently fall
    back to other credentials).
    """
    found = load_block_settings(env)
    if found is None:
        return None
    what, settings = found
    set_credentials_provider(lambda: dict(settings))
    log.info("AWS access from %s (key id %s...)", what, str(settings.get("aws_access_key_id", "-"))[:4])
    return what


def pull_step() -> dict[str, Any]:
    """A ``prefect.yaml`` pull step: install the block credentials in the flow-run process."""
    return {"aws_credentials": install_block_credentials() or "standard AWS chain"}
