"""Bridge S3 "object created" notifications (via SQS) into Prefect events.

New recordings land in S3; S3 notifies an SQS queue (directly or through SNS);
this bridge long-polls the queue and turns every relevant record into a
Prefect event (``spira.s3.object.created`` by default) that automations use to
trigger the continuous-training flow.

Delivery is at-least-once end to end and duplicates are harmless:

* an SQS message is deleted only after every event it produced was
  acknowledged by the Prefect server, so a crash or an unreachable server
  means redelivery, never loss;
* a message that fails for a transient reason (the Prefect API is down, the
  HEAD check of its object keeps failing with a 5xx, throttling or a reset
  after a few retries) is left in the queue and comes back after the
  queue's visibility timeout;
* a message that cannot be parsed is left for the queue's dead-letter queue:
  with a redrive policy (``maxReceiveCount``) SQS moves it there after that
  many receives (the bridge makes it visible again at once, so that takes
  seconds). Only a queue without a redrive policy gets poison deleted (with
  an error in the log), so it cannot cycle forever (``poison`` setting);
* event ids are derived from the S3 record (uuid5), so a redelivered message
  produces the same ids and the server drops the copies.

One queue may carry several folders of a bucket (the labelled data and the
inbox of recordings to score): repeat ``--prefix`` and each folder's objects
are forwarded; the deployments' triggers tell them apart by resource id.

Run it with ``python -m deployments.s3_bridge --queue-url URL [--bucket B] [--prefix P ...]``.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import time
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any, AsyncContextManager, Callable, Literal, Sequence
from urllib.parse import unquote_plus

import botocore.exceptions as bexc
from prefect.events import Event
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spira_lib.adapters.s3 import aws_session, client_config, is_transient, make_s3_client
from spira_lib.watch import OBJECT_CREATED_EVENT, key_in_folder

log = logging.getLogger("spira.s3_bridge")

DEFAULT_EVENT_NAME = OBJECT_CREATED_EVENT

# Fixed namespace for event ids: the same S3 record must map to the same id in
# every bridge process, forever, so the server can drop redelivered copies.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c3e0a-5b7d-4c1e-9a2f-53a1b2c3d4e5")


class BadMessage(ValueError):
    """An SQS message body is not a usable S3 notification; the message says why."""


class TransientFailure(RuntimeError):
    """Handling a message failed for a reason that may pass; the message is left for redelivery."""


@dataclass(frozen=True)
class S3Record:
    """One S3 notification record, key already URL-decoded."""

    bucket: str
    key: str
    size: int
    etag: str
    sequencer: str
    event_name: str  # S3's name, e.g. 'ObjectCreated:Put'
    event_time: datetime
    version_id: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def is_object_created(self) -> bool:
        return self.event_name.removeprefix("s3:").startswith("ObjectCreated")


# ---------------------------------------------------------------- parsing


def _loads(text: Any, what: str) -> Any:
    if not isinstance(text, (str, bytes)):
        raise BadMessage(f"{what} is not a string (got {type(text).__name__})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadMessage(f"{what} is not valid JSON: {exc}") from None


def _field(tree: Any, path: str, where: str) -> Any:
    """Walk 'a.b.c' through nested dicts; BadMessage naming the missing field otherwise."""
    node = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise BadMessage(f"{where}: missing field '{path}'")
        node = node[part]
    return node


def _parse_time(text: Any, where: str) -> datetime:
    if not isinstance(text, str):
        raise BadMessage(f"{where}: field 'eventTime' must be a string, got {text!r}")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadMessage(f"{where}: field 'eventTime' is not an ISO-8601 time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _parse_record(raw: Any, index: int) -> S3Record:
    where = f"record {index}"
    if not isinstance(raw, dict):
        raise BadMessage(f"{where} is not an object")
    source = raw.get("eventSource", "aws:s3")
    if source != "aws:s3":
        raise BadMessage(f"{where}: eventSource is {source!r}, not 'aws:s3'")
    event_name = _field(raw, "eventName", where)
    bucket = _field(raw, "s3.bucket.name", where)
    raw_key = _field(raw, "s3.object.key", where)
    if not isinstance(bucket, str) or not bucket:
        raise BadMessage(f"{where}: field 's3.bucket.name' must be a non-empty string")
    if not isinstance(raw_key, str) or not raw_key:
        raise BadMessage(f"{where}: field 's3.object.key' must be a non-empty string")
    if not isinstance(event_name, str) or not event_name:
        raise BadMessage(f"{where}: field 'eventName' must be a non-empty string")
    obj = raw["s3"]["object"]
    size = obj.get("size", 0)  # absent on delete records
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadMessage(f"{where}: field 's3.object.size' must be a non-negative integer, got {size!r}")
    return S3Record(
        bucket=bucket,
        # S3 form-encodes keys in notifications: spaces arrive as '+', a real '+' as '%2B'.
        key=unquote_plus(raw_key),
        size=size,
        etag=str(obj.get("eTag", "")).strip('"'),
        sequencer=str(obj.get("sequencer", "")),
        event_name=event_name,
        event_time=_parse_time(_field(raw, "eventTime", where), where),
        version_id=str(obj.get("versionId") or ""),
    )


def parse_s3_message(body: str) -> list[S3Record] | None:
    """An SQS message body -> its S3 records.

    Accepts a direct S3 notification or one wrapped in an SNS envelope.
    Returns ``[]`` for S3's ``s3:TestEvent`` (sent when notifications are
    configured), ``None`` for a well-formed SNS control message that carries no
    notification (subscription confirmations), and raises :class:`BadMessage`
    for anything else that is not a usable notification.
    """
    doc = _loads(body, "message body")
    if not isinstance(doc, dict):
        raise BadMessage(f"message body is a JSON {type(doc).__name__}, not an object")
    sns_type = doc.get("Type")
    if sns_type in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        return None
    if sns_type == "Notification":
        doc = _loads(doc.get("Message"), "SNS field 'Message'")
        if not isinstance(doc, dict):
            raise BadMessage(f"SNS field 'Message' is a JSON {type(doc).__name__}, not an object")
    if doc.get("Event") == "s3:TestEvent":
        return []
    if "Records" not in doc:
        raise BadMessage("not an S3 notification: no 'Records' field")
    records = doc["Records"]
    if not isinstance(records, list):
        raise BadMessage(f"field 'Records' must be a list, got {type(records).__name__}")
    return [_parse_record(raw, i) for i, raw in enumerate(records)]


# ---------------------------------------------------------------- events


def event_id(record: S3Record, event_name: str = DEFAULT_EVENT_NAME) -> uuid.UUID:
    """Deterministic id: the same record (even redelivered, even via SNS) gives the same id.

    S3's sequencer orders events on one key and is unique per change; S3-compatible
    stores that omit it fall back to etag + event time, which a redelivery repeats
    but a re-upload of identical bytes does not.
    """
    change = record.sequencer or f"{record.etag}@{record.event_time.isoformat()}"
    text = "\n".join([event_name, record.event_name, record.bucket, record.key, record.version_id, change])
    return uuid.uuid5(EVENT_ID_NAMESPACE, text)


def record_payload(record: S3Record) -> dict[str, Any]:
    data = asdict(record)
    data["event_time"] = record.event_time.isoformat()
    return data


def record_to_event(record: S3Record, *, event_name: str = DEFAULT_EVENT_NAME) -> Event:
    """The Prefect event announcing ``record``'s object."""
    return Event(
        event=event_name,
        occurred=record.event_time,
        resource={
            "prefect.resource.id": record.uri,
            "s3.bucket": record.bucket,
            "s3.key": record.key,
            "s3.size": str(record.size),
            "s3.etag": record.etag,
        },
        payload=record_payload(record),
        id=event_id(record, event_name),
    )


# ---------------------------------------------------------------- config


def _env_first(*names: str) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None


_SQS_HOST_REGION = re.compile(r"sqs[.-]([a-z0-9-]+)\.amazonaws\.com")


class BridgeConfig(BaseModel):
    """Where to read notifications, what to forward and where to send events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue_url: str = Field(min_length=1, description="SQS queue receiving the bucket notifications")
    # Allowed bucket names; empty = any bucket.
    buckets: tuple[str, ...] = ()
    # Only keys under one of these folders are forwarded ('incoming' forwards 'incoming/...');
    # empty (or the single folder '') = the whole bucket. ``prefix="x"`` is accepted for one folder.
    prefixes: tuple[str, ...] = ()
    wait_time_s: int = Field(20, ge=0, le=20, description="SQS long-poll wait (SQS caps it at 20)")
    max_messages: int = Field(10, ge=1, le=10, description="messages per receive (SQS caps it at 10)")
    # Poll loops running side by side (receive the next batch while the previous one is emitted).
    pollers: int = Field(1, ge=1, le=16)
    # Overrides the queue's visibility timeout for received messages (time to emit before redelivery).
    visibility_timeout_s: int | None = Field(None, ge=0, le=43200)
    event_name: str = Field(DEFAULT_EVENT_NAME, min_length=1)
    sqs_endpoint_url: str | None = Field(
        default_factory=lambda: _env_first("SPIRA_SQS_ENDPOINT_URL", "AWS_ENDPOINT_URL")
    )
    s3_endpoint_url: str | None = Field(
        default_factory=lambda: _env_first("SPIRA_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")
    )
    region: str | None = Field(default_factory=lambda: _env_first("AWS_DEFAULT_REGION", "AWS_REGION"))
    # HEAD each object before emitting and skip it if it was deleted meanwhile.
    check_exists: bool = True
    # Attempts of a HEAD that fails transiently (5xx, throttling, reset, timeout) before the message is left.
    head_attempts: int = Field(3, ge=1, le=10)
    # First wait between HEAD attempts; doubles each time.
    head_backoff_s: float = Field(0.5, ge=0)
    # Unparseable messages: "auto" leaves them for the dead-letter queue when the queue has a
    # redrive policy and deletes them otherwise; "dlq" always leaves them; "delete" always deletes.
    poison: Literal["auto", "dlq", "delete"] = "auto"
    # Prefect API to emit to; None = the PREFECT_API_URL setting.
    prefect_api_url: str | None = None
    # Reconnection attempts of the events client before a message is left for redelivery.
    emit_attempts: int = Field(3, ge=0, le=20)
    # First wait after a failed receive; doubles up to 60 s while failures continue.
    error_backoff_s: float = Field(5.0, ge=0)

    @field_validator("buckets")
    @classmethod
    def _check_buckets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not name or "/" in name:
                raise ValueError(f"invalid bucket name {name!r}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _single_prefix(cls, data: Any) -> Any:
        """``prefix="incoming"`` (the one-folder form, kept for existing callers) -> ``prefixes``."""
        if isinstance(data, dict) and "prefix" in data:
            data = dict(data)
            single = data.pop("prefix")
            if not isinstance(single, str):
                raise ValueError(f"prefix must be a string, got {single!r} (use prefixes for several folders)")
            # The old default '' (no filter) adds nothing: no prefixes already means the whole bucket.
            data["prefixes"] = ((single,) if single.strip("/") else ()) + tuple(data.get("prefixes", ()))
        return data

    @field_validator("prefixes")
    @classmethod
    def _norm_prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        folders = tuple(dict.fromkeys(p.strip("/") for p in value))  # normalised, duplicates dropped, order kept
        if "" in folders and len(folders) > 1:
            raise ValueError("the whole bucket ('') cannot be combined with other prefixes: it already contains them")
        return () if folders == ("",) else folders

    def forwards_key(self, key: str) -> bool:
        """``key`` lies in one of the watched folders (any key when there are none)."""
        return any(key_in_folder(key, folder) for folder in self.prefixes or ("",))

    def resolved_region(self) -> str:
        """Configured region, else the one in an AWS queue URL, else us-east-1."""
        if self.region:
            return self.region
        match = _SQS_HOST_REGION.search(self.queue_url)
        return match.group(1) if match else "us-east-1"


@dataclass
class BridgeStats:
    """What one poll (or a whole run) did; counts are of messages unless named after records."""

    received: int = 0
    emitted: int = 0  # events acknowledged by the Prefect server
    skipped: int = 0  # records filtered out (bucket, prefix, folder marker, not a create, deleted)
    deleted: int = 0  # messages removed from the queue after being handled
    poison: int = 0  # malformed messages (left for the dead-letter queue, or deleted when there is none)
    failed: int = 0  # messages left in the queue for redelivery after a transient failure

    def __add__(self, other: "BridgeStats") -> "BridgeStats":
        return BridgeStats(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


# ---------------------------------------------------------------- bridge

EventsClientFactory = Callable[..., AsyncContextManager[Any]]


def _events_client_factory(api_url: str, attempts: int) -> EventsClientFactory:
    from prefect.events.clients import PrefectCloudEventsClient, PrefectEventsClient
    from prefect.settings import PREFECT_CLOUD_API_URL

    cloud = api_url.startswith(str(PREFECT_CLOUD_API_URL.value()))
    cls = PrefectCloudEventsClient if cloud else PrefectEventsClient

    def make(batch: int = 1) -> AsyncContextManager[Any]:
        # checkpoint_every=batch: the batch's last emit waits for the server's pong,
        # which confirms every event sent before it (one round trip per poll, not per
        # event); when it returns, the whole batch has reached the server and its
        # messages may go. A dropped connection resends the unconfirmed events.
        return cls(api_url=api_url, reconnection_attempts=attempts, checkpoint_every=max(1, batch))

    make.takes_batch = True  # type: ignore[attr-defined]
    return make


class S3EventBridge:
    """Long-polls one SQS queue and forwards S3 object-created records as Prefect events."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        sqs_client: Any = None,
        s3_client: Any = None,
        events_client_factory: EventsClientFactory | None = None,
    ) -> None:
        self.config = config
        region = config.resolved_region()
        self._sqs = sqs_client or aws_session().client(
            "sqs", endpoint_url=config.sqs_endpoint_url, region_name=region, config=client_config()
        )
        self._has_dlq: bool | None = None  # learnt from the queue's RedrivePolicy on the first poison message
        # time.monotonic() of the first and the latest acknowledged emit (throughput figures)
        self.first_emit_at: float | None = None
        self.last_emit_at: float | None = None
        self._s3 = s3_client
        if self._s3 is None and config.check_exists:
            self._s3 = make_s3_client(config.s3_endpoint_url, region)
        if events_client_factory is None:
            from prefect.settings import PREFECT_API_URL

            api_url = config.prefect_api_url or PREFECT_API_URL.value()
            if not api_url:
                # Prefect would otherwise start a throwaway ephemeral server and the
                # events would vanish with it.
                raise ValueError(
                    "no Prefect API to send events to: set PREFECT_API_URL or BridgeConfig.prefect_api_url"
                )
            events_client_factory = _events_client_factory(str(api_url), config.emit_attempts)
        self._events_client = events_client_factory

    # -- SQS

    def _receive(self) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "QueueUrl": self.config.queue_url,
            "MaxNumberOfMessages": self.config.max_messages,
            "WaitTimeSeconds": self.config.wait_time_s,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
        }
        if self.config.visibility_timeout_s is not None:
            kwargs["VisibilityTimeout"] = self.config.visibility_timeout_s
        return self._sqs.receive_message(**kwargs).get("Messages", [])

    async def _delete(self, msg: dict[str, Any], stats: BridgeStats) -> None:
        try:
            await asyncio.to_thread(
                self._sqs.delete_message, QueueUrl=self.config.queue_url, ReceiptHandle=msg["ReceiptHandle"]
            )
        except Exception as exc:  # noqa: BLE001 - a failed delete only means a harmless redelivery
            log.warning("message %s: handled but could not be deleted (it will be redelivered; "
                        "its events are deduplicated by id): %s", msg.get("MessageId"), exc)
            return
        stats.deleted += 1

    # -- filtering

    def _skip_reason(self, record: S3Record) -> str | None:
        cfg = self.config
        if not record.is_object_created:
            return f"event {record.event_name!r} is not an object creation"
        if cfg.buckets and record.bucket not in cfg.buckets:
            return f"bucket {record.bucket!r} is not one of {list(cfg.buckets)}"
        if record.key.endswith("/"):
            return "key is a folder marker"
        if not cfg.forwards_key(record.key):
            return f"key is outside {', '.join(repr(p + '/') for p in cfg.prefixes)}"
        return None

    def _object_missing(self, record: S3Record) -> bool:
        """True only when S3 says the object is gone (404).

        Transient HEAD failures (5xx, throttling, resets, timeouts) are retried
        with backoff; if they persist, TransientFailure leaves the message for
        redelivery. A permanent non-404 error (e.g. 403: the bridge may not
        read the bucket) cannot be fixed by waiting: the record is forwarded
        without the check, which is an optimisation, never a gate.
        """
        delay = self.config.head_backoff_s
        for attempt in range(1, self.config.head_attempts + 1):
            try:
                self._s3.head_object(Bucket=record.bucket, Key=record.key)
                return False
            except bexc.ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code in ("404", "NoSuchKey", "NotFound") or status == 404:
                    return True
                if not is_transient(exc):
                    log.warning("%s: HEAD failed (%s); forwarding without the existence check", record.uri, exc)
                    return False
                error: Exception = exc
            except Exception as exc:  # noqa: BLE001 - classified below
                if not is_transient(exc):
                    log.warning("%s: HEAD failed (%s); forwarding without the existence check", record.uri, exc)
                    return False
                error = exc
            if attempt < self.config.head_attempts:
                log.warning("%s: HEAD failed transiently (attempt %d/%d), retrying in %.1fs: %s",
                            record.uri, attempt, self.config.head_attempts, delay, error)
                time.sleep(delay)
                delay *= 2
        raise TransientFailure(f"HEAD {record.uri} failed {self.config.head_attempts} times: {error}")

    def _queue_has_dlq(self) -> bool:
        if self._has_dlq is None:
            try:
                attrs = self._sqs.get_queue_attributes(QueueUrl=self.config.queue_url, AttributeNames=["RedrivePolicy"])
                self._has_dlq = bool(attrs.get("Attributes", {}).get("RedrivePolicy"))
            except Exception as exc:  # noqa: BLE001 - cannot tell: keep the message, never lose one
                log.warning("cannot read the RedrivePolicy of %s (%s); leaving poison messages in the queue",
                            self.config.queue_url, exc)
                return True
            if not self._has_dlq:
                log.error("queue %s has no redrive policy: malformed messages will be deleted. Give it a "
                          "dead-letter queue (RedrivePolicy with maxReceiveCount) to keep them", self.config.queue_url)
        return self._has_dlq

    async def _poison(self, msg: dict[str, Any], exc: BadMessage, stats: BridgeStats) -> None:
        msg_id = msg.get("MessageId", "?")
        stats.poison += 1
        mode = self.config.poison
        keep = mode == "dlq" or (mode == "auto" and await asyncio.to_thread(self._queue_has_dlq))
        if not keep:
            log.error("message %s: malformed, deleting it as poison: %s", msg_id, exc)
            await self._delete(msg, stats)
            return
        receives = msg.get("Attributes", {}).get("ApproximateReceiveCount", "?")
        log.error("message %s: malformed (receive %s), leaving it for the dead-letter queue: %s", msg_id, receives, exc)
        try:  # visible again at once: SQS moves it to the DLQ after maxReceiveCount receives
            await asyncio.to_thread(self._sqs.change_message_visibility, QueueUrl=self.config.queue_url,
                                    ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=0)
        except Exception as err:  # noqa: BLE001 - it comes back after the visibility timeout anyway
            log.warning("message %s: could not make it visible again: %s", msg_id, err)

    async def _events_for(self, msg: dict[str, Any], stats: BridgeStats) -> list[Event] | None:
        """Events to emit for ``msg``; None when the message is already settled (deleted or left)."""
        msg_id = msg.get("MessageId", "?")
        try:
            records = parse_s3_message(msg.get("Body", ""))
        except BadMessage as exc:
            await self._poison(msg, exc, stats)
            return None
        if records is None:
            log.info("message %s: SNS control message, not a notification; deleting", msg_id)
            await self._delete(msg, stats)
            return None
        if not records:
            log.info("message %s: S3 test event; deleting", msg_id)
            await self._delete(msg, stats)
            return None
        events: list[Event] = []
        for record in records:
            reason = self._skip_reason(record)
            if reason is None and self.config.check_exists and self._s3 is not None:
                try:
                    missing = await asyncio.to_thread(self._object_missing, record)
                except TransientFailure as exc:
                    log.error("message %s: %s; leaving it for redelivery", msg_id, exc)
                    stats.failed += 1
                    return None
                if missing:
                    reason = "object no longer exists"
            if reason is not None:
                log.info("message %s: skip %s: %s", msg_id, record.uri, reason)
                stats.skipped += 1
                continue
            events.append(record_to_event(record, event_name=self.config.event_name))
        if not events:
            await self._delete(msg, stats)
            return None
        return events

    async def poll_once(self) -> BridgeStats:
        """Receive one batch (long poll), forward its events, delete what was fully handled.

        Raises only when the receive itself fails; per-message problems are logged.
        """
        stats = BridgeStats()
        messages = await asyncio.to_thread(self._receive)
        stats.received = len(messages)
        # Messages are checked side by side (HEADs in parallel threads); their events go out as one batch.
        results = await asyncio.gather(*(self._events_for(msg, stats) for msg in messages))
        pending = [(msg, events) for msg, events in zip(messages, results) if events is not None]
        if pending:
            await self._emit_and_delete(pending, stats)
        return stats

    async def _emit_and_delete(self, pending: list[tuple[dict[str, Any], list[Event]]], stats: BridgeStats) -> None:
        """Emit every event of the batch, then delete its messages; on any failure leave them all.

        All or nothing: a message is deleted only once the server confirmed all
        events of the batch; after a failure every message comes back, and the
        events already sent are dropped as duplicates by id.
        """
        events = [event for _, evs in pending for event in evs]
        factory = self._events_client
        try:
            client_cm = factory(len(events)) if getattr(factory, "takes_batch", False) else factory()
            async with client_cm as client:
                for event in events:
                    await client.emit(event)
        except Exception as exc:  # noqa: BLE001 - e.g. the Prefect server is unreachable: leave for redelivery
            log.error("emitting %d event(s) failed, leaving %d message(s) for redelivery: %s",
                      len(events), len(pending), exc)
            stats.failed += len(pending)
            return
        for msg, evs in pending:
            for event in evs:
                log.info("message %s: forwarded %s as event %s (%s)", msg.get("MessageId", "?"),
                         event.resource.id, event.id, event.event)
        stats.emitted += len(events)
        self.last_emit_at = time.monotonic()
        if self.first_emit_at is None:
            self.first_emit_at = self.last_emit_at
        await self._delete_all([msg for msg, _ in pending], stats)

    async def _delete_all(self, messages: list[dict[str, Any]], stats: BridgeStats) -> None:
        """Delete handled messages, up to 10 per request; a failed delete only means a harmless redelivery."""
        batch_delete = getattr(self._sqs, "delete_message_batch", None)
        if batch_delete is None:
            for msg in messages:
                await self._delete(msg, stats)
            return
        for start in range(0, len(messages), 10):
            chunk = messages[start:start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            try:
                resp = await asyncio.to_thread(batch_delete, QueueUrl=self.config.queue_url, Entries=entries)
            except Exception as exc:  # noqa: BLE001 - they come back; their events are deduplicated by id
                log.warning("deleting %d handled message(s) failed (they will be redelivered): %s", len(chunk), exc)
                continue
            for failure in resp.get("Failed", []):
                log.warning("handled message %s could not be deleted (it will be redelivered): %s",
                            chunk[int(failure["Id"])].get("MessageId"), failure.get("Message"))
            stats.deleted += len(resp.get("Successful", []))

    async def run(
        self, stop: asyncio.Event | None = None, max_polls: int | None = None, idle_polls: int | None = None
    ) -> BridgeStats:
        """Poll until ``stop`` is set, ``max_polls`` polls were made, or ``idle_polls`` polls in a row
        received nothing (a drain: the queue is empty); returns the totals.

        ``config.pollers`` loops poll side by side (SQS allows many consumers), so one
        batch is received while the previous one is emitted. A stop request is
        noticed between polls, so within ``wait_time_s``.
        """
        total = [BridgeStats()]
        polls = [0]
        log.info("bridge started: queue=%s buckets=%s prefixes=%s event=%s pollers=%d", self.config.queue_url,
                 list(self.config.buckets) or "any", [p + "/" for p in self.config.prefixes] or "any",
                 self.config.event_name, self.config.pollers)

        async def loop() -> None:
            idle, backoff = 0, self.config.error_backoff_s
            while (stop is None or not stop.is_set()) and (max_polls is None or polls[0] < max_polls):
                polls[0] += 1
                try:
                    stats = await self.poll_once()
                    total[0] = total[0] + stats
                    backoff = self.config.error_backoff_s
                    idle = 0 if stats.received else idle + 1
                    if idle_polls is not None and idle >= idle_polls:
                        return
                except Exception as exc:  # noqa: BLE001 - SQS hiccups must not kill the bridge
                    log.error("receive from %s failed, retrying in %.1fs: %s", self.config.queue_url, backoff, exc)
                    await _sleep_or_stop(backoff, stop)
                    backoff = min(60.0, max(backoff * 2, 0.1))

        await asyncio.gather(*(loop() for _ in range(self.config.pollers)))
        log.info("bridge stopped after %d poll(s): %s", polls[0], total[0])
        return total[0]


async def _sleep_or_stop(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


# ---------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deployments.s3_bridge",
        description="Forward S3 object-created notifications from an SQS queue to Prefect as events.",
    )
    p.add_argument("--queue-url", required=True, help="SQS queue URL receiving the bucket notifications")
    p.add_argument("--bucket", action="append", default=[], dest="buckets",
                   help="allowed bucket (repeatable; default: any)")
    p.add_argument("--prefix", action="append", default=[], dest="prefixes",
                   help="only forward keys under this folder (repeatable, e.g. --prefix incoming --prefix inbox; "
                        "default: the whole bucket)")
    p.add_argument("--event-name", default=DEFAULT_EVENT_NAME, help="Prefect event name to emit")
    p.add_argument("--wait-time", type=int, default=20, dest="wait_time_s", help="long-poll seconds (0-20)")
    p.add_argument("--max-messages", type=int, default=10, help="messages per receive (1-10)")
    p.add_argument("--pollers", type=int, default=None, help="poll loops side by side (default 1)")
    p.add_argument("--visibility-timeout", type=int, default=None, dest="visibility_timeout_s",
                   help="seconds a received message stays hidden (default: the queue's)")
    p.add_argument("--sqs-endpoint-url", default=None, help="SQS endpoint (default: $SPIRA_SQS_ENDPOINT_URL, $AWS_ENDPOINT_URL)")
    p.add_argument("--s3-endpoint-url", default=None, help="S3 endpoint (default: $SPIRA_S3_ENDPOINT_URL, $AWS_ENDPOINT_URL)")
    p.add_argument("--region", default=None, help="AWS region (default: $AWS_DEFAULT_REGION, the queue URL's, us-east-1)")
    p.add_argument("--prefect-api-url", default=None, help="Prefect API (default: the PREFECT_API_URL setting)")
    p.add_argument("--no-head-check", action="store_false", dest="check_exists",
                   help="forward without checking that the object still exists")
    p.add_argument("--poison", choices=["auto", "dlq", "delete"], default=None,
                   help="unparseable messages: leave them for the queue's dead-letter queue (dlq), delete them, "
                        "or auto (dlq when the queue has a redrive policy; default)")
    p.add_argument("--max-polls", type=int, default=None, help="stop after this many polls (default: run forever)")
    p.add_argument("--exit-when-idle", type=int, default=None, metavar="POLLS", dest="idle_polls",
                   help="stop after this many polls in a row received nothing (drain the queue, then exit)")
    p.add_argument("--summary", action="store_true",
                   help="print one JSON line at exit: totals, seconds, events per second")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return p


_CONFIG_ARGS = (
    "queue_url", "buckets", "prefixes", "event_name", "wait_time_s", "max_messages", "visibility_timeout_s", "pollers",
    "sqs_endpoint_url", "s3_endpoint_url", "region", "prefect_api_url", "check_exists", "poison",
)


def _config_from_namespace(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> BridgeConfig:
    values = {name: getattr(ns, name) for name in _CONFIG_ARGS}
    # Unset optional flags fall back to the config's environment-aware defaults.
    values = {k: v for k, v in values.items() if v is not None}
    values["buckets"] = tuple(values.get("buckets", ()))
    values["prefixes"] = tuple(values.get("prefixes", ()))
    try:
        return BridgeConfig(**values)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        parser.error(f"invalid bridge settings: {problems}")
        raise  # pragma: no cover - parser.error exits


def bridge_config_from_args(argv: Sequence[str] | None = None) -> BridgeConfig:
    """Command-line arguments -> BridgeConfig (exits with status 2 and a message on bad input)."""
    parser = _parser()
    return _config_from_namespace(parser.parse_args(argv), parser)


async def _run_until_signalled(bridge: S3EventBridge, max_polls: int | None, idle_polls: int | None = None) -> BridgeStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return await bridge.run(stop=stop, max_polls=max_polls, idle_polls=idle_polls)


def summary(bridge: S3EventBridge, total: BridgeStats, seconds: float) -> dict[str, Any]:
    """Totals and throughput of a run: events per second between the first and the last emit."""
    span = None
    if bridge.first_emit_at is not None and bridge.last_emit_at is not None:
        span = bridge.last_emit_at - bridge.first_emit_at
    rate = total.emitted / span if span else None
    return {"stats": asdict(total), "seconds": round(seconds, 2),
            "emit_span_s": None if span is None else round(span, 2),
            "events_per_s": None if rate is None else round(rate, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m deployments.s3_bridge``; returns the exit status."""
    parser = _parser()
    ns = parser.parse_args(argv)
    config = _config_from_namespace(ns, parser)
    logging.basicConfig(level=str(ns.log_level).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from deployments.aws_credentials import install_block_credentials

    try:
        # $SPIRA_AWS_CREDENTIALS_BLOCK / $SPIRA_S3_BUCKET_BLOCK name a prefect-aws block; else the AWS chain.
        install_block_credentials()
    except Exception as exc:  # noqa: BLE001 - a named block that cannot be loaded must stop the bridge
        log.error("cannot load the AWS credentials block: %s", exc)
        return 2
    try:
        bridge = S3EventBridge(config)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    t0 = time.monotonic()
    total = asyncio.run(_run_until_signalled(bridge, ns.max_polls, ns.idle_polls))
    if ns.summary:
        print(json.dumps(summary(bridge, total, time.monotonic() - t0)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
