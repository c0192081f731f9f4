"""The S3 bridge without servers: parsing notifications, event ids, configuration, surviving receive failures."""
from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from deployments.s3_bridge import (
    DEFAULT_EVENT_NAME,
    BadMessage,
    BridgeConfig,
    BridgeStats,
    S3EventBridge,
    bridge_config_from_args,
    event_id,
    parse_s3_message,
    record_to_event,
)
from tests.unit.deployments._s3_messages import aws_record, sns_wrap


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
    assert cfg.prefixes == ("incoming",)  # one --prefix, as before
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


# ---------------------------------------------------------------- transient failures and poison


class FakeSQS:
    """The SQS calls the bridge makes, over an in-memory list of messages."""

    def __init__(self, bodies: list[str], redrive: bool = False) -> None:
        self.messages = [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": b, "Attributes": {"ApproximateReceiveCount": "1"}}
                         for i, b in enumerate(bodies)]
        self.redrive = redrive
        self.deleted: list[str] = []
        self.visibility: list[tuple[str, int]] = []

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        return {"Messages": [m for m in self.messages if m["ReceiptHandle"] not in self.deleted]}

    def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> None:
        self.deleted.append(ReceiptHandle)

    def change_message_visibility(self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> None:
        self.visibility.append((ReceiptHandle, VisibilityTimeout))

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        policy = json.dumps({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq", "maxReceiveCount": 3})
        return {"Attributes": {"RedrivePolicy": policy} if self.redrive else {}}


class FakeS3:
    """head_object fails with the given errors first, then succeeds."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = list(failures)
        self.heads = 0

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self.heads += 1
        if self.failures:
            raise self.failures.pop(0)
        return {}


class FakeEvents:
    def __init__(self) -> None:
        self.emitted: list[Any] = []

    def __call__(self) -> "FakeEvents":
        return self

    async def __aenter__(self) -> "FakeEvents":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    async def emit(self, event: Any) -> None:
        self.emitted.append(event)


def _client_error(code: str, status: int) -> Exception:
    import botocore.exceptions as bexc

    return bexc.ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                            "HeadObject")


def _bridge(sqs: FakeSQS, s3: FakeS3, events: FakeEvents, **cfg: Any) -> S3EventBridge:
    config = BridgeConfig(queue_url="q", head_backoff_s=0.001, **cfg)
    return S3EventBridge(config, sqs_client=sqs, s3_client=s3, events_client_factory=events)


UPLOAD = json.dumps({"Records": [aws_record("incoming/a.wav")]})


@pytest.mark.parametrize("error", [_client_error("InternalError", 500), _client_error("SlowDown", 503),
                                   ConnectionResetError("reset by peer"), TimeoutError("timed out")])
def test_head_transient_error_is_retried_then_forwarded(error: Exception) -> None:
    sqs, s3, events = FakeSQS([UPLOAD]), FakeS3([error, error]), FakeEvents()
    stats = asyncio.run(_bridge(sqs, s3, events).poll_once())
    assert s3.heads == 3 and len(events.emitted) == 1
    assert stats.emitted == 1 and stats.deleted == 1 and stats.failed == 0


def test_head_that_keeps_failing_leaves_the_message_for_redelivery() -> None:
    sqs, events = FakeSQS([UPLOAD]), FakeEvents()
    s3 = FakeS3([_client_error("ServiceUnavailable", 503)] * 3)
    stats = asyncio.run(_bridge(sqs, s3, events, head_attempts=3).poll_once())
    assert s3.heads == 3 and events.emitted == []
    assert stats.failed == 1 and stats.deleted == 0 and sqs.deleted == []
    # Redelivered later, when S3 answers again: forwarded and deleted.
    stats = asyncio.run(_bridge(sqs, s3, events).poll_once())
    assert stats.emitted == 1 and sqs.deleted == ["r0"]


def test_head_permanent_error_forwards_without_the_check_and_404_skips() -> None:
    sqs, events = FakeSQS([UPLOAD]), FakeEvents()
    stats = asyncio.run(_bridge(sqs, FakeS3([_client_error("AccessDenied", 403)]), events).poll_once())
    assert stats.emitted == 1 and stats.failed == 0
    sqs = FakeSQS([UPLOAD])
    stats = asyncio.run(_bridge(sqs, FakeS3([_client_error("404", 404)]), events).poll_once())
    assert stats.skipped == 1 and stats.emitted == 0 and sqs.deleted == ["r0"]


def test_poison_is_left_for_the_dead_letter_queue_when_the_queue_has_one() -> None:
    sqs, events = FakeSQS(["{not json", UPLOAD], redrive=True), FakeEvents()
    stats = asyncio.run(_bridge(sqs, FakeS3([]), events).poll_once())
    assert stats.poison == 1 and stats.emitted == 1
    assert sqs.deleted == ["r1"]  # only the good one
    assert sqs.visibility == [("r0", 0)]  # back at once, so SQS redrives it after maxReceiveCount receives


def test_poison_is_deleted_when_the_queue_has_no_dead_letter_queue() -> None:
    sqs = FakeSQS(["{not json"], redrive=False)
    stats = asyncio.run(_bridge(sqs, FakeS3([]), FakeEvents()).poll_once())
    assert stats.poison == 1 and sqs.deleted == ["r0"]
    sqs = FakeSQS(["{not json"], redrive=False)
    stats = asyncio.run(_bridge(sqs, FakeS3([]), FakeEvents(), poison="dlq").poll_once())
    assert stats.poison == 1 and sqs.deleted == []


def test_run_exits_after_idle_polls_and_a_failed_batch_leaves_every_message() -> None:
    sqs, events = FakeSQS([UPLOAD]), FakeEvents()
    bridge = _bridge(sqs, FakeS3([]), events, check_exists=False)
    total = asyncio.run(bridge.run(idle_polls=2, max_polls=10))
    assert total.emitted == 1 and total.received == 1  # one busy poll, then two empty ones
    assert bridge.first_emit_at is not None

    class Broken(FakeEvents):
        async def emit(self, event: Any) -> None:
            if self.emitted:
                raise ConnectionError("server went away")
            self.emitted.append(event)

    second = json.dumps({"Records": [aws_record("incoming/b.wav", sequencer="0062E99A88DC409999")]})
    sqs = FakeSQS([UPLOAD, second])
    stats = asyncio.run(_bridge(sqs, FakeS3([]), Broken(), check_exists=False).poll_once())
    assert stats.failed == 2 and stats.emitted == 0 and sqs.deleted == []


# ---------------------------------------------------------------- several prefixes (data and inbox from one queue)


def test_prefix_is_repeatable_on_the_command_line() -> None:
    cfg = bridge_config_from_args(["--queue-url", "q", "--prefix", "incoming", "--prefix", "/inbox/", "--prefix", "incoming"])
    assert cfg.prefixes == ("incoming", "inbox")  # normalised, a repeated folder once, order kept
    assert bridge_config_from_args(["--queue-url", "q"]).prefixes == ()  # no --prefix: the whole bucket
    assert bridge_config_from_args(["--queue-url", "q", "--prefix", ""]).prefixes == ()  # as the doctor prints it
    with pytest.raises(SystemExit) as info:  # the whole bucket and a folder of it: say which one is meant
        bridge_config_from_args(["--queue-url", "q", "--prefix", "", "--prefix", "inbox"])
    assert info.value.code == 2


def test_config_keeps_the_single_prefix_keyword() -> None:
    assert BridgeConfig(queue_url="q", prefix="/incoming/").prefixes == ("incoming",)
    assert BridgeConfig(queue_url="q", prefix="").prefixes == ()  # the old default: no filter
    assert BridgeConfig(queue_url="q", prefix="incoming", prefixes=("inbox",)).prefixes == ("incoming", "inbox")
    assert BridgeConfig(queue_url="q", prefix="", prefixes=["inbox"]).prefixes == ("inbox",)
    with pytest.raises(ValueError, match="whole bucket"):
        BridgeConfig(queue_url="q", prefixes=("", "inbox"))
    with pytest.raises(ValueError, match="prefix must be a string"):
        BridgeConfig(queue_url="q", prefix=["incoming", "inbox"])


@pytest.mark.parametrize(("key", "forwarded"), [
    ("incoming/p1/a.wav", True), ("inbox/b.wav", True), ("inbox/deep/c.flac", True),
    ("inbox2/d.wav", False), ("registry/spira/v0001/model.pt", False), ("e.wav", False), ("inbox/", False),
])
def test_config_forwards_keys_under_any_of_its_folders(key: str, forwarded: bool) -> None:
    cfg = BridgeConfig(queue_url="q", prefixes=("incoming", "inbox"))
    assert cfg.forwards_key(key) is forwarded
    assert BridgeConfig(queue_url="q").forwards_key(key) is (not key.endswith("/"))


def test_one_queue_forwards_the_data_and_the_inbox_folders_and_skips_the_rest() -> None:
    keys = ["incoming/p1.wav", "inbox/new.wav", "registry/spira/v0001/model.pt", "inbox2/x.wav", "incoming/"]
    bodies = [json.dumps({"Records": [aws_record(k, sequencer=f"00{i}")]}) for i, k in enumerate(keys)]
    sqs, events = FakeSQS(bodies), FakeEvents()
    stats = asyncio.run(_bridge(sqs, FakeS3([]), events, check_exists=False, prefixes=("incoming", "inbox")).poll_once())
    assert [e.resource.id for e in events.emitted] == ["s3://spira-raw/incoming/p1.wav", "s3://spira-raw/inbox/new.wav"]
    assert stats.emitted == 2 and stats.skipped == 3
    assert sorted(sqs.deleted) == ["r0", "r1", "r2", "r3", "r4"]  # skipped records are settled too
