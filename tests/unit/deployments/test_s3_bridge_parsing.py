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
