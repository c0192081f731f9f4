"""ObjectStore over Amazon S3 (or any S3-compatible service: MinIO, moto).

This is the only module of ``spira_lib`` allowed to import boto3. Credentials
come from the standard AWS chain (environment, shared config, instance role)
by default. The orchestration layer may install a *credentials provider*
(``set_credentials_provider``): a function returning plain session settings,
for example read from a prefect-aws ``AwsCredentials`` block stored by
Prefect. Secrets then live in memory only, never in configs, URIs or logs.
It may also inject a ready-made ``client``.

Conditional creates (``put(..., if_absent=True)``) use S3's
``If-None-Match: *``: of two racing writers exactly one gets 200, the other
412 PreconditionFailed, which becomes ``ObjectExists``.
"""
from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.exceptions as bexc
from botocore.config import Config

from spira_lib.ports import ObjectExists, ObjectInfo, ObjectNotFound, StoreError, join_key

log = logging.getLogger(__name__)

T = TypeVar("T")

# Error codes S3 uses for "slow down / try again": worth another attempt.
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "PriorRequestNotComplete",
        # A conditional write raced a delete or another in-flight write of the key: S3 asks for a retry.
        "ConditionalRequestConflict",
    }
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})

# Transport failures botocore raises (or lets through from urllib3) when a
# connection drops mid-request or mid-body; the body read in ``get`` happens
# outside botocore's own retry loop, hence our wrapper.
_TRANSIENT_EXC: tuple[type[BaseException], ...] = (
    bexc.ConnectionError,
    bexc.HTTPClientError,
    bexc.IncompleteReadError,
    ConnectionError,
    TimeoutError,
)


def _error_code(exc: bexc.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: bexc.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry may fix: throttling, 5xx, dropped connections."""
    if isinstance(exc, bexc.ClientError):
        return _error_code(exc) in _TRANSIENT_CODES or _http_status(exc) >= 500
    return isinstance(exc, _TRANSIENT_EXC)


def client_config(max_attempts: int = 4) -> Config:
    """botocore settings for our clients: standard retry mode, bounded timeouts."""
    return Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )


# Session settings a credentials provider may return (all optional).
SESSION_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "profile_name", "region_name")
CredentialsProvider = Callable[[], "Mapping[str, Any] | None"]
_provider: CredentialsProvider | None = None


def set_credentials_provider(provider: CredentialsProvider | None) -> None:
    """Install (or with None remove) the process-wide source of AWS session settings.

    ``provider()`` returns a mapping with any of ``SESSION_KEYS`` plus an
    optional ``endpoint_url``, or None for the standard AWS chain. It is called
    each time a client is made, so rotated secrets are picked up by new clients.
    """
    global _provider
    _provider = provider


def _settings(credentials: Mapping[str, Any] | None) -> dict[str, Any]:
    if credentials is None and _provider is not None:
        credentials = _provider()
    return {k: v for k, v in (credentials or {}).items() if v not in (None, "")}


def aws_session(credentials: Mapping[str, Any] | None = None) -> Any:
    """A boto3 session from ``credentials``, else the installed provider, else the standard AWS chain."""
    settings = _settings(credentials)
    return boto3.session.Session(**{k: v for k, v in settings.items() if k in SESSION_KEYS})


def make_s3_client(
    endpoint_url: str | None = None, region: str | None = None, *, credentials: Mapping[str, Any] | None = None
) -> Any:
    """An S3 client from ``credentials``, the installed provider, or the environment's AWS chain.

    ``endpoint_url`` defaults to ``SPIRA_S3_ENDPOINT_URL``, then the provider's
    ``endpoint_url``, then ``AWS_ENDPOINT_URL``; the region to the provider's,
    then ``AWS_DEFAULT_REGION`` (``us-east-1`` when unset).
    """
    settings = _settings(credentials)
    endpoint_url = (endpoint_url or os.environ.get("SPIRA_S3_ENDPOINT_URL") or settings.get("endpoint_url")
                    or os.environ.get("AWS_ENDPOINT_URL") or None)
    region = (region or settings.get("region_name") or os.environ.get("AWS_DEFAULT_REGION")
              or os.environ.get("AWS_REGION") or "us-east-1")
    config = client_config()
    if endpoint_url:
        # S3-compatible servers (MinIO, moto on a plain host:port) rarely have
        # wildcard DNS for virtual-hosted buckets; path style always works.
        config = config.merge(Config(s3={"addressing_style": "path"}))
    session = boto3.session.Session(**{k: v for k, v in settings.items() if k in SESSION_KEYS})
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix')."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an S3 URI: {uri!r} (expected s3://bucket[/prefix])")
    return parts.netloc, join_key(parts.path)


class S3Store:
    """Keys map to ``<prefix>/<key>`` objects in ``bucket``.

    Every call (get, put, exists, list, delete) retries transient failures a
    few times with exponential backoff on top of botocore's own retries. All
    our operations are idempotent (a repeated PutObject of the same bytes or a
    repeated delete changes nothing), so retrying writes is as safe as
    retrying reads. The one subtle case is a conditional create whose first
    attempt reached S3 but whose answer was lost: the retry then gets 412, and
    the object is read back: the same bytes mean it was our own write. Our own
    retries matter most when an outage drains botocore's retry quota (500
    tokens, 14 per retried 5xx/reset, 5 per throttle): botocore then stops
    retrying and these attempts are all that is left. Waits are bounded:
    ``retry_base_delay_s * (2**attempts - 1)`` at most, capped per wait at
    ``retry_max_delay_s``.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: Any = None,
        *,
        page_size: int = 1000,
        retry_attempts: int = 5,
        retry_base_delay_s: float = 0.2,
        retry_max_delay_s: float = 2.0,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be in 1..1000 (S3's limit), got {page_size}")
        if retry_attempts < 1:
            raise ValueError(f"retry_attempts must be >= 1, got {retry_attempts}")
        self.bucket = bucket
        self.prefix = join_key(prefix)
        self._client = client if client is not None else make_s3_client()
        self._page_size = page_size
        self._attempts = retry_attempts
        self._base_delay = retry_base_delay_s
        self._max_delay = retry_max_delay_s

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> "S3Store":
        """Open ``s3://bucket/prefix`` with a client built from the environment."""
        bucket, prefix = parse_s3_uri(uri)
        return cls(bucket, prefix, **kwargs)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _key(self, key: str) -> str:
        rel = join_key(key)
        if not rel:
            raise ValueError(f"empty object key {key!r} for {self.uri}")
        return join_key(self.prefix, rel)

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _retry(self, what: str, where: str, fn: Callable[[], T]) -> T:
        """Run ``fn``; retry transient errors; turn the rest into StoreError naming ``where``."""
        for attempt in range(1, self._attempts + 1):
            try:
                return fn()
            except (ObjectNotFound, ObjectExists):
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                if not is_transient(exc):
                    raise StoreError(f"cannot {what} {where}: {exc}") from exc
                if attempt == self._attempts:
                    raise StoreError(f"cannot {what} {where} after {attempt} attempts: {exc}") from exc
                # Full jitter keeps many workers from retrying in lockstep.
                delay = min(self._max_delay, self._base_delay * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2
                log.warning("transient S3 error on %s %s (attempt %d/%d), retrying in %.2fs: %s",
                            what, where, attempt, self._attempts, delay, exc)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, key: str) -> bytes:
        full = self._key(key)
        where = self._where(full)

        def read() -> bytes:
            try:
                resp = self._client.get_object(Bucket=self.bucket, Key=full)
            except bexc.ClientError as exc:
                if _error_code(exc) in _MISSING_CODES:
                    raise ObjectNotFound(where) from None
                raise
            body = resp["Body"]
            try:
                return body.read()
            finally:
                body.close()

        return self._retry("read", where, read)

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        full, body = self._key(key), bytes(data)
        where = self._where(full)
        if not if_absent:
            # One PutObject: S3 makes the new object visible all at once, never partially.
            self._retry("write", where, lambda: self._client.put_object(Bucket=self.bucket, Key=full, Body=body))
            return
        attempts = 0

        def create() -> None:
            nonlocal attempts
            attempts += 1
            try:
                self._client.put_object(Bucket=self.bucket, Key=full, Body=body, IfNoneMatch="*")
            except bexc.ClientError as exc:
                if _error_code(exc) != "PreconditionFailed" and _http_status(exc) != 412:
                    raise
                if attempts > 1 and self._holds(full, body):
                    return  # an earlier attempt of ours succeeded; only its answer was lost
                raise ObjectExists(where) from None

        self._retry("create", where, create)

    def _holds(self, full: str, body: bytes) -> bool:
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=full)
            return resp["Body"].read() == body
        except Exception:  # noqa: BLE001 - cannot tell: report the key as taken
            return False

    def exists(self, key: str) -> bool:
        full = self._key(key)

        def head() -> bool:
            try:
                self._client.head_object(Bucket=self.bucket, Key=full)
                return True
            except bexc.ClientError as exc:
                if _error_code(exc) in _MISSING_CODES or _http_status(exc) == 404:
                    return False
                raise

        return self._retry("check", self._where(full), head)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Not join_key: a trailing '/' in the prefix is meaningful ('a/' must not match 'ab').
        root = f"{self.prefix}/" if self.prefix else ""
        s3_prefix = root + prefix.lstrip("/")
        where = self._where(s3_prefix)
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": s3_prefix, "MaxKeys": self._page_size}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._retry("list", where, lambda: self._client.list_objects_v2(**kwargs))
            # S3 returns keys in UTF-8 byte order, which is Python's str order:
            # streaming pages keeps the listing sorted without holding it all.
            for obj in page.get("Contents", []):
                yield ObjectInfo(obj["Key"][len(root):], int(obj.get("Size", 0)), str(obj.get("ETag", "")).strip('"'))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def delete(self, key: str) -> None:
        full = self._key(key)
        # DeleteObject succeeds for a missing key, matching the other adapters.
        self._retry("delete", self._where(full),
                    lambda: self._client.delete_object(Bucket=self.bucket, Key=full))

    def local_path(self, key: str) -> Path | None:
        return None

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r})"
