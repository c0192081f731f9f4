"""Helpers shared by the tests in this folder."""
from __future__ import annotations

import json
from typing import Any


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
