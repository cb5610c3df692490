"""S3 notification payloads, as AWS sends them, parsed by the ingest function's handler code."""

from __future__ import annotations

import json

import pytest

from fermion.functions.ingest.errors import BadUpload
from fermion.functions.ingest.s3_events import parse_key, s3_records

# An S3 ObjectCreated:Put notification (event structure version 2.1), as documented by AWS.
S3_EVENT = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2026-11-22T12:00:00.000Z",
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {
                "x-amz-request-id": "C3D13FE58DE4C810",
                "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "fermion-drops",
                "bucket": {
                    "name": "fermion",
                    "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                    "arn": "arn:aws:s3:::fermion",
                },
                "object": {
                    "key": "incoming/acme/my+flowers.csv",
                    "size": 1024,
                    "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                    "sequencer": "0055AED6DCD90281E5",
                },
            },
        },
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectRemoved:Delete",
            "s3": {"bucket": {"name": "fermion"}, "object": {"key": "incoming/old.csv"}},
        },
    ],
}


def test_direct_and_sqs_wrapped_notifications_yield_the_created_objects() -> None:
    (direct,) = s3_records(S3_EVENT)
    assert direct["s3"]["object"]["key"] == "incoming/acme/my+flowers.csv"
    sqs_event = {"Records": [{"messageId": "1", "eventSource": "aws:sqs", "body": json.dumps(S3_EVENT)}]}
    assert s3_records(sqs_event) == [direct]
    assert s3_records({"Service": "Amazon S3", "Event": "s3:TestEvent"}) == []


def test_drop_keys_name_tenant_dataset_and_format() -> None:
    drop = parse_key("incoming/acme/flowers.CSV")
    assert (drop.tenant, drop.name, drop.format) == ("acme", "flowers", "csv")
    assert parse_key("incoming/digits.npz").tenant == "default"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("datasets/x.csv", "not a dataset drop"),
        ("incoming/a/b/c.csv", "not a dataset drop"),
        ("incoming/notes.txt", "unsupported extension"),
        ("incoming/../x.csv", "invalid"),
    ],
)
def test_bad_drop_keys_are_refused_with_the_reason(key: str, reason: str) -> None:
    with pytest.raises(BadUpload, match=reason):
        parse_key(key)
