"""The pipeline's event names, and which objects belong to a watched location.

Dependency-free on purpose: the S3 bridge, the deployment triggers, ``spira
serve`` and the flows all import these from here, so they can never disagree
about which uploads start a run or what an automation should listen for.
"""
from __future__ import annotations

# The Prefect event the bridge emits for every new object, and the triggers expect.
OBJECT_CREATED_EVENT = "spira.s3.object.created"
# What a retrain run decided, for automations that notify people.
MODEL_PROMOTED_EVENT = "spira.model.promoted"
MODEL_REJECTED_EVENT = "spira.model.rejected"


def model_resource_id(model: str, version: int) -> str:
    """The event resource of one registered model version."""
    return f"spira.model.{model}.v{version}"


def is_inside(uri: str, base: str) -> bool:
    """An object ``uri`` inside the location ``base``, folder-wise.

    ``s3://b/in/x.wav`` is inside ``s3://b/in``; ``s3://b/in2/x.wav`` is not, nor
    is ``s3://b/in`` itself, and nothing is inside an empty base. This is what
    the trigger pattern ``s3://b/in/*`` matches.
    """
    base = base.rstrip("/")
    return bool(base) and uri.startswith(base + "/") and len(uri) > len(base) + 1


def is_under(uri: str, base: str) -> bool:
    """``uri`` is the location ``base`` itself or inside it (for locations that must not overlap)."""
    return bool(base.rstrip("/")) and (uri.rstrip("/") == base.rstrip("/") or is_inside(uri, base))


def key_in_folder(key: str, folder: str) -> bool:
    """An object key inside ``folder`` (``""`` = the whole bucket); folder markers (``a/``) are not objects."""
    folder = folder.strip("/")
    if key.endswith("/"):
        return False
    return not folder or key.startswith(folder + "/")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")``; ValueError names the URI otherwise."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"watched location {uri!r} is not an s3://bucket[/prefix] URI")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"watched location {uri!r} has no bucket name")
    if any(c in bucket for c in "*?{}"):
        raise ValueError(f"watched location {uri!r}: the bucket name may not contain wildcards")
    prefix = prefix.strip("/")
    if "*" in prefix:
        raise ValueError(f"watched location {uri!r}: the prefix may not contain '*' (it is added by the trigger)")
    return bucket, prefix


def watched_resource(bucket: str, prefix: str = "") -> str:
    """The resource-id pattern of the watched objects, ``s3://bucket/prefix/*``.

    The trailing ``/`` keeps ``s3://b/incoming2/x.wav`` out of a trigger on
    ``s3://b/incoming``: the same folder rule as :func:`is_under`.
    """
    prefix = prefix.strip("/")
    return f"s3://{bucket}/{prefix}/*" if prefix else f"s3://{bucket}/*"
