"""A NATS password read at run time from AWS Secrets Manager, never from a plain environment variable.

`FERMION_NATS_PASSWORD_SECRET` names the secret (ARN or name); its string is the password itself or
JSON with a `password` field (what `fermion deploy aws render` writes). Read once per process, when
the unit first connects; botocore's errors stop here as BusUnavailable.
"""

from __future__ import annotations

import json
from contextlib import closing
from functools import lru_cache

from .errors import BusUnavailable


@lru_cache(maxsize=8)
def secret_password(secret_id: str) -> str:
    """The password stored in Secrets Manager under `secret_id`."""
    import boto3  # only a unit whose password is in Secrets Manager needs it
    import botocore.exceptions

    try:
        with closing(boto3.session.Session().client("secretsmanager")) as client:
            text = client.get_secret_value(SecretId=secret_id)["SecretString"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise BusUnavailable(f"the NATS password in Secrets Manager ({secret_id}) could not be read: {exc}") from exc
    try:
        value = json.loads(text)
    except ValueError:
        return str(text)
    return str(value["password"]) if isinstance(value, dict) and "password" in value else str(text)
