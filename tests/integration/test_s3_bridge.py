"""The S3 -> SQS -> Prefect event bridge.

Parsing and config tests need no servers. The integration tests wire a real
moto_server bucket notification (s3:ObjectCreated:*) to a real SQS queue and
read the forwarded events back from a real `prefect server start`.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from deployments.s3_bridge import (
    DEFAULT_EVENT_NAME,
    BadMessage,
    BridgeConfig,
    BridgeStats,
    S3EventBridge,
    bridge_config_from_args,
    event_id,
    main,
    parse_s3_message,
    record_to_event,
)
from spira_lib.adapters.s3 import make_s3_client
from tests.servers import free_port

# ------------------------------------------------------------------ payloads


def aws_record(key: str, *, bucket: str = "spira-raw", sequencer: str = "0062E99A88DC407460",
               event_name: str = "ObjectCreated:Put", size: int = 1024) -> dict[str, Any]:
    """A record shaped like the ones AWS S3 sends (keys form-encoded)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "sa-east-1",
        "eventTime": "2024-05-02T13:45:10.123Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.9"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "spira-incoming",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                       "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": size, "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                       "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko", "sequencer": sequencer},
        },
    }


def sns_wrap(inner: str) -> str:
    return json.dumps({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:sa-east-1:123456789012:spira-uploads",
        "Subject": "Amazon S3 Notification",
        "Message": inner,
        "Timestamp": "2024-05-02T13:45:10.500Z",
    })


def test_parse_decodes_form_encoded_keys() -> None:
    body = json.dumps({"Records": [
        aws_record("incoming/Paciente+01%20grava%C3%A7%C3%A3o.wav"),
        aws_record("incoming/a%2Bb+c.wav", sequencer="0062E99A88DC407461"),
    ]})
    first, second = parse_s3_message(body)
    assert first.key == "incoming/Paciente 01 gravação.wav"
    assert second.key == "incoming/a+b c.wav"  # '%2B' is a real plus, '+' a space
    assert first.bucket == "spira-raw"
    assert first.size == 1024
    assert first.etag == "d41d8cd98f00b204e9800998ecf8427e"
    assert first.sequencer == "0062E99A88DC407460"
    assert first.version_id == "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    assert first.event_name == "ObjectCreated:Put"
    assert first.event_time == datetime(2024, 5, 2, 13, 45, 10, 123000, tzinfo=timezone.utc)
    assert first.uri == "s3://spira-raw/incoming/Paciente 01 gravação.wav"


def test_parse_test_event_and_sns_control_messages() -> None:
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-05-02T13:00:00.000Z",
                  "Bucket": "spira-raw", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkw"}
    assert parse_s3_message(json.dumps(test_event)) == []
    assert parse_s3_message(sns_wrap(json.dumps(test_event))) == []
    confirmation = {"Type": "SubscriptionConfirmation", "Token": "abc", "SubscribeURL": "https://sns.example"}
    assert parse_s3_message(json.dumps(confirmation)) is None


def test_parse_sns_wrapped_equals_direct() -> None:
    inner = json.dumps({"Records": [aws_record("incoming/x+y.wav")]})
    direct = parse_s3_message(inner)
    wrapped = parse_s3_message(sns_wrap(inner))
    assert wrapped == direct
    assert wrapped[0].key == "incoming/x y.wav"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "message body is not valid JSON"),
        ("[1, 2]", "JSON list, not an object"),
        ('{"hello": "world"}', "no 'Records' field"),
        ('{"Records": {"a": 1}}', "'Records' must be a list"),
        (json.dumps({"Type": "Notification", "Message": "{broken"}), "SNS field 'Message' is not valid JSON"),
        (json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}),
         "record 0: missing field 's3.bucket.name'"),
        (json.dumps({"Records": [{**aws_record("k"), "eventSource": "aws:sqs"}]}), "not 'aws:s3'"),
        (json.dumps({"Records": [{**aws_record("k"), "eventTime": "yesterday"}]}), "not an ISO-8601 time"),
        (json.dumps({"Records": [aws_record("ok"), {k: v for k, v in aws_record("k").items() if k != "eventTime"}]}),
         "record 1: missing field 'eventTime'"),
    ],
)
def test_parse_rejects_malformed_with_reason(body: str, reason: str) -> None:
    with pytest.raises(BadMessage) as info:
        parse_s3_message(body)
    assert reason in str(info.value)


def test_record_to_event_labels_payload_and_deterministic_id() -> None:
    (record,) = parse_s3_message(json.dumps({"Records": [aws_record("incoming/p+1.wav")]}))
    event = record_to_event(record)
    assert event.event == DEFAULT_EVENT_NAME
    assert dict(event.resource.root) == {
        "prefect.resource.id": "s3://spira-raw/incoming/p 1.wav",
        "s3.bucket": "spira-raw",
        "s3.key": "incoming/p 1.wav",
        "s3.size": "1024",
        "s3.etag": "d41d8cd98f00b204e9800998ecf8427e",
    }
    assert event.payload["key"] == "incoming/p 1.wav"
    assert event.payload["sequencer"] == "0062E99A88DC407460"
    assert event.payload["event_name"] == "ObjectCreated:Put"
    assert event.occurred == record.event_time

    # Redelivery (same record) -> same id; another change of the key -> another id.
    (again,) = parse_s3_message(sns_wrap(json.dumps({"Records": [aws_record("incoming/p+1.wav")]})))
    assert record_to_event(again).id == event.id
    (later,) = parse_s3_message(json.dumps({"Records": [aws_record("incoming/p+1.wav", sequencer="0062E99A88DC409999")]}))
    assert record_to_event(later).id != event.id
    assert record_to_event(record, event_name="other.name").id != event.id
    assert event_id(record) == event.id


def test_config_from_args_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://generic:1")
    monkeypatch.setenv("SPIRA_SQS_ENDPOINT_URL", "http://sqs-only:2")
    monkeypatch.delenv("SPIRA_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    cfg = bridge_config_from_args([
        "--queue-url", "https://sqs.sa-east-1.amazonaws.com/123456789012/spira-uploads",
        "--bucket", "spira-raw", "--bucket", "spira-extra", "--prefix", "/incoming/", "--wait-time", "5",
    ])
    assert cfg.buckets == ("spira-raw", "spira-extra")
    assert cfg.prefix == "incoming"
    assert cfg.wait_time_s == 5
    assert cfg.sqs_endpoint_url == "http://sqs-only:2"  # the SPIRA-specific variable wins
    assert cfg.s3_endpoint_url == "http://generic:1"
    assert cfg.resolved_region() == "sa-east-1"  # taken from the AWS queue URL
    with pytest.raises(SystemExit) as info:
        bridge_config_from_args(["--queue-url", "q", "--wait-time", "30"])
    assert info.value.code == 2
    with pytest.raises(ValueError, match="wait_time_s"):
        BridgeConfig(queue_url="q", wait_time_s=21)


def test_bridge_refuses_to_run_without_a_prefect_api() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}):
        with pytest.raises(ValueError, match="PREFECT_API_URL"):
            S3EventBridge(BridgeConfig(queue_url="q", check_exists=False), sqs_client=object())


class FlakySQS:
    """Stands in for boto3's SQS client: the first receive fails like a network outage."""

    def __init__(self) -> None:
        self.receives = 0

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.receives += 1
        if self.receives == 1:
            raise ConnectionResetError("connection reset by peer")
        return {"Messages": []}


def test_run_survives_receive_failures_and_honours_max_polls() -> None:
    sqs = FlakySQS()

    def no_events_expected():
        raise AssertionError("nothing to emit in this test")

    bridge = S3EventBridge(BridgeConfig(queue_url="q", check_exists=False, error_backoff_s=0.01),
                           sqs_client=sqs, events_client_factory=no_events_expected)
    total = asyncio.run(bridge.run(max_polls=3))
    assert sqs.receives == 3
    assert total == BridgeStats()

    stop = asyncio.Event()
    stop.set()
    assert asyncio.run(bridge.run(stop=stop)) == BridgeStats()
    assert sqs.receives == 3  # a stop requested before the first poll means no poll


def test_stats_add() -> None:
    total = BridgeStats(received=2, emitted=1) + BridgeStats(received=1, failed=1, poison=1)
    assert total == BridgeStats(received=3, emitted=1, failed=1, poison=1)


# ------------------------------------------------------------------ end to end


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
