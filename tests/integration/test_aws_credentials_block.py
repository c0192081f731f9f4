"""AWS credentials from a prefect-aws block stored on a real Prefect server, used against the S3/SQS test server.

The process has no AWS credentials of its own (no environment keys, no
shared config, no instance metadata); only the block, named by an
environment variable, gives the S3 adapter and the bridge access.
"""
from __future__ import annotations

import json

import boto3
import pytest

from deployments.aws_credentials import (
    BUCKET_BLOCK_ENV,
    CREDENTIALS_BLOCK_ENV,
    install_block_credentials,
    pull_step,
)
from spira_lib.adapters import s3 as s3_adapter
from spira_lib.bootstrap import open_registry, open_store
from spira_lib.ports import StoreError

pytestmark = pytest.mark.integration

NO_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                  "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "SPIRA_S3_ENDPOINT_URL")


@pytest.fixture
def bare_env(aws_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> str:
    """No AWS credentials or endpoint anywhere in this process; returns the moto endpoint."""
    boto3.client("s3", endpoint_url=aws_env).create_bucket(Bucket="spira-blocks")  # before the keys go
    for name in NO_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    yield aws_env
    s3_adapter.set_credentials_provider(None)


def _save_blocks(endpoint: str, unique: str) -> tuple[str, str]:
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters
    from prefect_aws.s3 import S3Bucket

    creds = AwsCredentials(aws_access_key_id="block-key", aws_secret_access_key="block-secret",
                           region_name="us-east-1", aws_client_parameters=AwsClientParameters(endpoint_url=endpoint))
    creds.save(f"spira-aws-{unique}", overwrite=True)
    S3Bucket(bucket_name="spira-blocks", credentials=creds).save(f"spira-bucket-{unique}", overwrite=True)
    return f"spira-aws-{unique}", f"spira-bucket-{unique}"


def test_s3_store_uses_the_named_credentials_block(bare_env, prefect_env, unique_name, monkeypatch) -> None:
    creds_name, _ = _save_blocks(bare_env, unique_name)
    with pytest.raises(StoreError, match="Unable to locate credentials"):
        open_store("s3://spira-blocks/no-creds").put("k", b"v")  # nothing to authenticate with

    monkeypatch.setenv(CREDENTIALS_BLOCK_ENV, creds_name)
    assert pull_step() == {"aws_credentials": f"AwsCredentials block {creds_name!r}"}
    store = open_store("s3://spira-blocks/registry")
    store.put("probe.txt", b"via the block")
    assert store.get("probe.txt") == b"via the block"
    reg = open_registry("s3://spira-blocks/registry")
    assert reg.register("spira", {"model.pt": b"w"}).version == 1
    assert reg.fsck("spira") == []

    # The secret is in Prefect's block storage, not in the environment.
    import os

    assert not any("block-secret" in v for v in os.environ.values())


def test_s3_bucket_block_and_bridge(bare_env, prefect_env, unique_name, monkeypatch) -> None:
    from deployments.s3_bridge import BridgeConfig, S3EventBridge

    _, bucket_name = _save_blocks(bare_env, unique_name)
    monkeypatch.setenv(BUCKET_BLOCK_ENV, bucket_name)
    assert install_block_credentials() == f"S3Bucket block {bucket_name!r}"
    # The bridge's SQS and S3 clients get the block's keys too; the endpoint is the test server's.
    sqs = s3_adapter.aws_session().client("sqs", endpoint_url=bare_env, region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName=f"spira-creds-{unique_name}")["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"Event": "s3:TestEvent"}))
    bridge = S3EventBridge(BridgeConfig(queue_url=queue_url, sqs_endpoint_url=bare_env, wait_time_s=1,
                                        prefect_api_url=prefect_env))
    import asyncio

    stats = asyncio.run(bridge.poll_once())
    assert stats.received == 1 and stats.deleted == 1


def test_unknown_block_is_an_error_not_a_fallback(bare_env, prefect_env, monkeypatch) -> None:
    monkeypatch.setenv(CREDENTIALS_BLOCK_ENV, "no-such-block")
    with pytest.raises(ValueError):
        install_block_credentials()


def test_without_a_block_the_standard_chain_applies(aws_env, monkeypatch) -> None:
    monkeypatch.delenv(CREDENTIALS_BLOCK_ENV, raising=False)
    monkeypatch.delenv(BUCKET_BLOCK_ENV, raising=False)
    assert install_block_credentials() is None
    assert s3_adapter._settings(None) == {}
