"""S3Store against a real moto_server (S3 API over HTTP on 127.0.0.1)."""
from __future__ import annotations

import hashlib
import random

import botocore.exceptions as bexc
import pytest

from spira_lib.adapters.s3 import S3Store, is_transient, make_s3_client, parse_s3_uri
from spira_lib.bootstrap import open_store
from spira_lib.ports import ObjectNotFound, ObjectStore, StoreError
from tests.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def bucket(aws_env: str, unique_name: str) -> str:
    name = f"spira-store-{unique_name}"
    make_s3_client().create_bucket(Bucket=name)
    return name


def test_roundtrip_through_open_store(bucket: str) -> None:
    store = open_store(f"s3://{bucket}/data/v1/")
    assert isinstance(store, S3Store)
    assert isinstance(store, ObjectStore)
    assert store.uri == f"s3://{bucket}/data/v1"

    store.put("clips/a b.wav", b"RIFF-1")
    assert store.get("clips/a b.wav") == b"RIFF-1"
    assert store.exists("clips/a b.wav")
    assert not store.exists("clips/other.wav")
    assert store.local_path("clips/a b.wav") is None
    # Stored under the prefix, visible to a raw client at the full key.
    raw = make_s3_client().get_object(Bucket=bucket, Key="data/v1/clips/a b.wav")
    assert raw["Body"].read() == b"RIFF-1"

    store.put("clips/a b.wav", b"RIFF-2")  # overwrite replaces the whole object
    assert store.get("clips/a b.wav") == b"RIFF-2"

    store.delete("clips/a b.wav")
    assert not store.exists("clips/a b.wav")
    store.delete("clips/a b.wav")  # deleting a missing key is not an error


def test_missing_key_is_object_not_found_naming_the_uri(bucket: str) -> None:
    store = S3Store(bucket, "root")
    with pytest.raises(ObjectNotFound) as info:
        store.get("nope/missing.bin")
    assert str(info.value) == f"s3://{bucket}/root/nope/missing.bin"


def test_missing_bucket_is_store_error(aws_env: str, unique_name: str) -> None:
    store = S3Store(f"spira-absent-{unique_name}", "x", retry_attempts=1)
    with pytest.raises(StoreError, match=f"s3://spira-absent-{unique_name}/x/k"):
        store.put("k", b"1")
    with pytest.raises(StoreError, match=f"spira-absent-{unique_name}"):
        list(store.list())


def test_list_paginates_sorted_with_sizes_and_etags(bucket: str) -> None:
    store = S3Store(bucket, "ds", page_size=2)  # 7 objects -> 4 pages
    keys = ["b/2.wav", "a/1.wav", "a/10.wav", "ab.csv", "a/0.wav", "z.json", "b/1.wav"]
    payloads = {k: f"payload-{k}".encode() * (i + 1) for i, k in enumerate(keys)}
    shuffled = list(keys)
    random.Random(3).shuffle(shuffled)
    for key in shuffled:
        store.put(key, payloads[key])

    listed = list(store.list())
    assert [o.key for o in listed] == sorted(keys)
    for info in listed:
        assert info.size == len(payloads[info.key])
        assert info.etag == hashlib.md5(payloads[info.key]).hexdigest()  # quotes stripped

    # A trailing slash is a folder: 'a/' must not match 'ab.csv'.
    assert [o.key for o in store.list("a/")] == ["a/0.wav", "a/1.wav", "a/10.wav"]
    assert [o.key for o in store.list("a")] == ["a/0.wav", "a/1.wav", "a/10.wav", "ab.csv"]
    assert list(store.list("nothing-here/")) == []


def test_prefix_isolation(bucket: str) -> None:
    one = S3Store(bucket, "team")
    sibling = S3Store(bucket, "team-b")  # shares the string prefix 'team', not the folder
    whole = S3Store(bucket)
    one.put("x.bin", b"1")
    sibling.put("x.bin", b"22")

    assert [(o.key, o.size) for o in one.list()] == [("x.bin", 1)]
    assert [(o.key, o.size) for o in sibling.list()] == [("x.bin", 2)]
    assert one.get("x.bin") == b"1"
    assert [o.key for o in whole.list()] == ["team-b/x.bin", "team/x.bin"]
    one.delete("x.bin")
    assert sibling.get("x.bin") == b"22"


def test_spira_endpoint_wins_over_aws_endpoint(bucket: str, aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The generic variable points at a closed port; the SPIRA one at moto.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("SPIRA_S3_ENDPOINT_URL", aws_env)
    store = S3Store.from_uri(f"s3://{bucket}/p")
    store.put("k", b"v")
    assert store.get("k") == b"v"


def test_parse_s3_uri_rejects_non_s3() -> None:
    assert parse_s3_uri("s3://b/a/b/") == ("b", "a/b")
    with pytest.raises(ValueError, match="not an S3 URI"):
        parse_s3_uri("file:///tmp/x")
    with pytest.raises(ValueError, match="not an S3 URI"):
        parse_s3_uri("s3:///prefix-without-bucket")


# ------------------------------------------------------------ retries


class FlakyClient:
    """Wraps a real boto3 client; the named operation fails with the given errors first."""

    def __init__(self, real, operation: str, failures: list[BaseException]) -> None:
        self._real = real
        self._operation = operation
        self._failures = list(failures)
        self.calls = 0

    def __getattr__(self, name: str):
        target = getattr(self._real, name)
        if name != self._operation:
            return target

        def call(**kwargs):
            self.calls += 1
            if self._failures:
                raise self._failures.pop(0)
            return target(**kwargs)

        return call


def _client_error(code: str, status: int, op: str) -> bexc.ClientError:
    return bexc.ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


def _fast(store_kwargs: dict | None = None) -> dict:
    return {"retry_base_delay_s": 0.001, "retry_max_delay_s": 0.005, **(store_kwargs or {})}


def test_get_retries_a_connection_reset(bucket: str) -> None:
    S3Store(bucket, "r").put("k", b"data")
    flaky = FlakyClient(make_s3_client(), "get_object",
                        [bexc.ConnectionClosedError(endpoint_url="http://127.0.0.1")])
    store = S3Store(bucket, "r", client=flaky, **_fast())
    assert store.get("k") == b"data"
    assert flaky.calls == 2


def test_list_retries_throttling_and_5xx(bucket: str) -> None:
    S3Store(bucket, "r").put("k", b"data")
    flaky = FlakyClient(make_s3_client(), "list_objects_v2",
                        [_client_error("SlowDown", 503, "ListObjectsV2"), _client_error("InternalError", 500, "ListObjectsV2")])
    store = S3Store(bucket, "r", client=flaky, **_fast())
    assert [o.key for o in store.list()] == ["k"]
    assert flaky.calls == 3


def test_retries_are_bounded(bucket: str) -> None:
    flaky = FlakyClient(make_s3_client(), "get_object",
                        [bexc.EndpointConnectionError(endpoint_url="http://127.0.0.1")] * 10)
    store = S3Store(bucket, "r", client=flaky, **_fast({"retry_attempts": 3}))
    with pytest.raises(StoreError, match=rf"s3://{bucket}/r/k after 3 attempts"):
        store.get("k")
    assert flaky.calls == 3


def test_permanent_errors_are_not_retried(bucket: str) -> None:
    flaky = FlakyClient(make_s3_client(), "get_object", [_client_error("AccessDenied", 403, "GetObject")])
    store = S3Store(bucket, "r", client=flaky, **_fast())
    with pytest.raises(StoreError, match="AccessDenied"):
        store.get("k")
    assert flaky.calls == 1


def test_transient_classification() -> None:
    assert is_transient(_client_error("Throttling", 400, "X"))
    assert is_transient(_client_error("Whatever", 502, "X"))
    assert is_transient(ConnectionResetError())
    assert not is_transient(_client_error("NoSuchBucket", 404, "X"))
    assert not is_transient(ValueError("bad"))
