"""The one rule for which objects belong to a watched location, and the event name (spira_lib.watch)."""
from __future__ import annotations

import re

import pytest

from spira_lib.watch import OBJECT_CREATED_EVENT, is_inside, is_under, key_in_folder, split_s3_uri, watched_resource


def test_split_and_watched_resource() -> None:
    assert split_s3_uri("s3://bkt/a/b/") == ("bkt", "a/b")
    assert split_s3_uri("s3://bkt") == ("bkt", "")
    assert watched_resource("bkt", "/a/b/") == "s3://bkt/a/b/*"
    assert watched_resource("bkt") == "s3://bkt/*"
    for bad in ("/data/x", "s3:///x", "s3://bkt/in*"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            split_s3_uri(bad)


@pytest.mark.parametrize(
    "uri, base, expected",
    [
        ("s3://b/in/x.wav", "s3://b/in", True),
        ("s3://b/in/x.wav", "s3://b/in/", True),
        ("s3://b/in", "s3://b/in", True),
        ("s3://b/in2/x.wav", "s3://b/in", False),
        ("s3://c/in/x.wav", "s3://b/in", False),
        ("s3://b/in/x.wav", "", False),
    ],
)
def test_is_under_is_folder_wise(uri: str, base: str, expected: bool) -> None:
    assert is_under(uri, base) is expected
    # An object is inside a location only strictly: the location itself is not one of its objects.
    assert is_inside(uri, base) is (expected and uri.rstrip("/") != base.rstrip("/"))


def test_key_in_folder() -> None:
    assert key_in_folder("incoming/a.wav", "incoming")
    assert key_in_folder("incoming/a.wav", "/incoming/")
    assert not key_in_folder("incoming2/a.wav", "incoming")
    assert not key_in_folder("incoming/sub/", "incoming")  # a folder marker is not an object
    assert key_in_folder("anything.wav", "")


def test_event_name_is_shared_by_bridge_and_triggers() -> None:
    from deployments import triggers
    from deployments.s3_bridge import DEFAULT_EVENT_NAME

    assert triggers.EVENT_NAME == DEFAULT_EVENT_NAME == OBJECT_CREATED_EVENT
