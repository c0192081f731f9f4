"""The S3 bridge against real servers (moto_server S3/SQS with a bucket notification, prefect server)."""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from deployments.s3_bridge import DEFAULT_EVENT_NAME, BridgeConfig, BridgeStats, S3EventBridge, main
from spira_lib.adapters.s3 import make_s3_client
from tests.servers import free_port
from tests.unit.deployments._s3_messages import sns_wrap


@dataclass
class Wiring:
    bucket: str
    queue_url: str
    s3: Any
    sqs: Any

    def queue_counts(self) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


VISIBILITY_S = 2  # short, so a message left by a failed emit comes back quickly


@pytest.fixture
def wiring(aws_env: str, unique_name: str) -> Wiring:
    """A moto bucket whose ObjectCreated notifications go to a fresh SQS queue."""
    import boto3

    s3 = make_s3_client()
    sqs = boto3.client("sqs")
    bucket = f"spira-raw-{unique_name}"
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName=f"spira-uploads-{unique_name}",
                                 Attributes={"VisibilityTimeout": str(VISIBILITY_S)})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    return Wiring(bucket, queue_url, s3, sqs)


def make_bridge(w: Wiring, api_url: str, **overrides: Any) -> S3EventBridge:
    settings = dict(queue_url=w.queue_url, buckets=(w.bucket,), prefix="incoming", wait_time_s=1,
                    prefect_api_url=api_url)
    settings.update(overrides)
    return S3EventBridge(BridgeConfig(**settings))


def drain(bridge: S3EventBridge, max_polls: int = 10) -> BridgeStats:
    """Poll until a poll receives nothing; the totals of all polls."""
    total = BridgeStats()
    for _ in range(max_polls):
        stats = asyncio.run(bridge.poll_once())
        total = total + stats
        if stats.received == 0:
            return total
    raise AssertionError(f"queue not drained after {max_polls} polls: {total}")


def read_events(api_url: str, bucket: str) -> list[dict[str, Any]]:
    """Events the Prefect server has stored for objects of ``bucket``."""
    body = {"filter": {"event": {"name": [DEFAULT_EVENT_NAME]},
                       "resource": {"id_prefix": [f"s3://{bucket}/"]}},
            "limit": 50}
    with httpx.Client(trust_env=False, timeout=10) as client:
        resp = client.post(f"{api_url}/events/filter", json=body)
    assert resp.status_code == 200, f"events/filter answered {resp.status_code}: {resp.text}"
    return resp.json()["events"]


def wait_for_keys(api_url: str, bucket: str, keys: set[str], timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Wait until events for all ``keys`` are stored (persistence is batched); return all events of the bucket."""
    deadline = time.monotonic() + timeout_s
    while True:
        events = read_events(api_url, bucket)
        if keys <= {e["resource"]["s3.key"] for e in events}:
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"events for {keys} not stored within {timeout_s}s; have {events}")
        time.sleep(0.25)


@pytest.mark.integration
def test_bridge_forwards_only_in_prefix_objects(wiring: Wiring, prefect_api_url: str) -> None:
    w = wiring
    audio = b"RIFF" + bytes(range(200))
    w.s3.put_object(Bucket=w.bucket, Key="incoming/paciente 01.wav", Body=audio)
    w.s3.put_object(Bucket=w.bucket, Key="incoming/sub/a+b.wav", Body=b"x" * 7)
    w.s3.put_object(Bucket=w.bucket, Key="elsewhere/c.wav", Body=b"y")
    w.s3.put_object(Bucket=w.bucket, Key="incomingX/d.wav", Body=b"z")  # shares the string, not the folder
    w.s3.put_object(Bucket=w.bucket, Key="incoming/folder/", Body=b"")  # console-style folder marker

    stats = drain(make_bridge(w, prefect_api_url))

    assert stats.emitted == 2
    assert stats.skipped == 3
    assert stats.failed == 0 and stats.poison == 0
    assert stats.deleted == stats.received == 6  # 5 uploads + the s3:TestEvent
    assert w.queue_counts() == (0, 0)

    events = wait_for_keys(prefect_api_url, w.bucket, {"incoming/paciente 01.wav", "incoming/sub/a+b.wav"})
    assert sorted(e["resource"]["s3.key"] for e in events) == ["incoming/paciente 01.wav", "incoming/sub/a+b.wav"]
    event = next(e for e in events if e["resource"]["s3.key"] == "incoming/paciente 01.wav")
    assert event["event"] == DEFAULT_EVENT_NAME
    assert event["resource"] == {
        "prefect.resource.id": f"s3://{w.bucket}/incoming/paciente 01.wav",
        "s3.bucket": w.bucket,
        "s3.key": "incoming/paciente 01.wav",
        "s3.size": str(len(audio)),
        "s3.etag": hashlib.md5(audio).hexdigest(),
    }
    assert event["payload"]["event_name"].startswith("ObjectCreated:")
    assert event["payload"]["bucket"] == w.bucket


@pytest.mark.integration
def test_redelivered_notification_gives_one_event(wiring: Wiring, prefect_api_url: str) -> None:
    w = wiring
    w.s3.put_object(Bucket=w.bucket, Key="incoming/again.wav", Body=b"same")
    # Peek at the notification without consuming it, to replay it later.
    peeked = w.sqs.receive_message(QueueUrl=w.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    bodies = [m["Body"] for m in peeked if "Records" in json.loads(m["Body"])]
    assert len(bodies) == 1

    bridge = make_bridge(w, prefect_api_url)
    assert drain(bridge).emitted == 1
    wait_for_keys(prefect_api_url, w.bucket, {"incoming/again.wav"})

    # Redelivery, plain and through an SNS fan-out: same record, same event id.
    w.sqs.send_message(QueueUrl=w.queue_url, MessageBody=bodies[0])
    w.sqs.send_message(QueueUrl=w.queue_url, MessageBody=sns_wrap(bodies[0]))
    replay = drain(bridge)
    assert replay.emitted == 2 and replay.deleted == 2  # sent again; the server drops the copies
    # A later object acts as a barrier: once it is stored, any duplicate sent before it would be too.
    w.s3.put_object(Bucket=w.bucket, Key="incoming/barrier.wav", Body=b"b")
    assert drain(bridge).emitted == 1
    events = wait_for_keys(prefect_api_url, w.bucket, {"incoming/barrier.wav"})
    assert [e["resource"]["s3.key"] for e in events].count("incoming/again.wav") == 1
    assert w.queue_counts() == (0, 0)


@pytest.mark.integration
def test_malformed_messages_are_deleted_and_bridge_keeps_going(wiring: Wiring, prefect_api_url: str) -> None:
    w = wiring
    w.sqs.send_message(QueueUrl=w.queue_url, MessageBody="{definitely not json")
    w.sqs.send_message(QueueUrl=w.queue_url, MessageBody=json.dumps({"Records": [{"eventSource": "aws:s3"}]}))
    w.s3.put_object(Bucket=w.bucket, Key="incoming/good.wav", Body=b"ok")

    stats = drain(make_bridge(w, prefect_api_url))

    assert stats.poison == 2
    assert stats.emitted == 1
    assert stats.deleted == stats.received == 4  # incl. the s3:TestEvent
    assert w.queue_counts() == (0, 0)
    wait_for_keys(prefect_api_url, w.bucket, {"incoming/good.wav"})


@pytest.mark.integration
def test_emit_failure_leaves_message_for_redelivery(wiring: Wiring, prefect_api_url: str) -> None:
    w = wiring
    w.s3.put_object(Bucket=w.bucket, Key="incoming/keep.wav", Body=b"precious")
    dead = make_bridge(w, f"http://127.0.0.1:{free_port()}/api", emit_attempts=0)

    stats = asyncio.run(dead.poll_once())

    assert stats.received == 2 and stats.failed == 1 and stats.emitted == 0
    assert stats.deleted == 1  # only the s3:TestEvent
    assert w.queue_counts() == (0, 1)  # still in the queue, hidden until the visibility timeout

    # Once it becomes visible again, a working bridge delivers it: nothing was lost.
    time.sleep(VISIBILITY_S + 0.5)
    assert drain(make_bridge(w, prefect_api_url)).emitted == 1
    assert w.queue_counts() == (0, 0)
    wait_for_keys(prefect_api_url, w.bucket, {"incoming/keep.wav"})


@pytest.mark.integration
def test_object_deleted_before_forwarding_is_skipped(wiring: Wiring, prefect_api_url: str) -> None:
    w = wiring
    w.s3.put_object(Bucket=w.bucket, Key="incoming/gone.wav", Body=b"bye")
    w.s3.delete_object(Bucket=w.bucket, Key="incoming/gone.wav")

    stats = drain(make_bridge(w, prefect_api_url))

    assert stats.emitted == 0 and stats.skipped == 1
    assert w.queue_counts() == (0, 0)


@pytest.mark.integration
def test_main_runs_the_bridge_from_the_command_line(wiring: Wiring, prefect_api_url: str) -> None:
    w = wiring
    w.s3.put_object(Bucket=w.bucket, Key="incoming/cli.wav", Body=b"cli")
    code = main(["--queue-url", w.queue_url, "--bucket", w.bucket, "--prefix", "incoming",
                 "--wait-time", "1", "--max-polls", "2", "--prefect-api-url", prefect_api_url])
    assert code == 0
    assert w.queue_counts() == (0, 0)
    wait_for_keys(prefect_api_url, w.bucket, {"incoming/cli.wav"})
