"""The bridge's failure handling on the S3/SQS test server: dead-letter queue, HEAD retries, redelivery."""
from __future__ import annotations

import asyncio
import json
import time

import boto3
import pytest

from deployments.s3_bridge import BridgeConfig, BridgeStats, S3EventBridge
from spira_lib.adapters.s3 import make_s3_client
from tests.faults import S3Faults
from tests.integration.test_s3_bridge import Wiring, read_events, wait_for_keys

pytestmark = pytest.mark.integration

MAX_RECEIVES = 3


@pytest.fixture
def wiring_with_dlq(aws_env: str, unique_name: str) -> tuple[Wiring, str]:
    """Bucket -> queue with a redrive policy (maxReceiveCount 3) to a dead-letter queue."""
    s3, sqs = make_s3_client(), boto3.client("sqs")
    bucket = f"spira-raw-{unique_name}"
    s3.create_bucket(Bucket=bucket)
    dlq_url = sqs.create_queue(QueueName=f"spira-uploads-dlq-{unique_name}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=f"spira-uploads-{unique_name}", Attributes={
        "VisibilityTimeout": "2",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}),
    })["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    return Wiring(bucket, queue_url, s3, sqs), dlq_url


def _bridge(w: Wiring, api_url: str, s3_client=None, **overrides) -> S3EventBridge:
    settings = dict(queue_url=w.queue_url, buckets=(w.bucket,), prefix="incoming", wait_time_s=1,
                    prefect_api_url=api_url, head_backoff_s=0.05)
    settings.update(overrides)
    return S3EventBridge(BridgeConfig(**settings), s3_client=s3_client)


def _polls(bridge: S3EventBridge, n: int) -> BridgeStats:
    total = BridgeStats()
    for _ in range(n):
        total = total + asyncio.run(bridge.poll_once())
    return total


def _dlq_bodies(sqs, dlq_url: str) -> list[str]:
    msgs = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    return [m["Body"] for m in msgs]


def test_unparseable_messages_reach_the_dead_letter_queue(wiring_with_dlq, prefect_api_url) -> None:
    w, dlq_url = wiring_with_dlq
    w.sqs.send_message(QueueUrl=w.queue_url, MessageBody="{definitely not json")
    w.sqs.send_message(QueueUrl=w.queue_url, MessageBody=json.dumps({"Records": [{"eventSource": "aws:s3"}]}))
    w.s3.put_object(Bucket=w.bucket, Key="incoming/good.wav", Body=b"ok")

    bridge = _bridge(w, prefect_api_url)
    stats = _polls(bridge, MAX_RECEIVES + 2)

    assert stats.emitted == 1
    assert stats.poison == 2 * MAX_RECEIVES  # each received maxReceiveCount times, then SQS moved it
    assert w.queue_counts() == (0, 0)
    assert sorted(_dlq_bodies(w.sqs, dlq_url)) == sorted(
        ["{definitely not json", json.dumps({"Records": [{"eventSource": "aws:s3"}]})])
    wait_for_keys(prefect_api_url, w.bucket, {"incoming/good.wav"})


def test_head_errors_are_retried_and_a_persistent_one_leaves_the_message(wiring_with_dlq, prefect_api_url) -> None:
    w, dlq_url = wiring_with_dlq
    w.s3.put_object(Bucket=w.bucket, Key="incoming/retry.wav", Body=b"r")
    # Every HEAD answers 503 SlowDown or 500 (botocore's own retries included): the message must stay.
    down = S3Faults(1.0, seed=4, kinds=("throttle", "500"), operations=("HeadObject",))
    client = down.install(make_s3_client())
    bridge = _bridge(w, prefect_api_url, s3_client=client, head_attempts=2)
    stats = asyncio.run(bridge.poll_once())
    assert stats.failed >= 1 and stats.emitted == 0
    assert sum(w.queue_counts()) == 1  # not deleted (hidden, or visible again once its timeout passed)
    assert down.stats.injected[("exists", "throttle")] + down.stats.injected[("exists", "500")] >= 2

    # S3 recovers; half of the HEADs still fail. The message comes back and is forwarded.
    down.rate = 0.5
    time.sleep(2.5)
    stats = _polls(bridge, 3)
    assert stats.emitted == 1
    assert w.queue_counts() == (0, 0)
    assert _dlq_bodies(w.sqs, dlq_url) == []
    events = wait_for_keys(prefect_api_url, w.bucket, {"incoming/retry.wav"})
    assert [e["resource"]["s3.key"] for e in events].count("incoming/retry.wav") == 1
    assert read_events(prefect_api_url, w.bucket)
