"""The one naming rule for the store's path segments (tenants, models, datasets, aliases); the registry's aliases.

Apart from the registry so that a client (the base install: no cryptography, no boto3) can apply
the rule to what a user typed without importing the store.
"""

from __future__ import annotations

import re

from .errors import InvalidName

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
LATEST = "latest"
SERVED = "production"  # the alias a bare model name serves


def check_name(kind: str, name: str) -> str:
    """`name` if it is a safe path segment, else InvalidName saying what is allowed."""
    if not _NAME.match(name) or ".." in name:
        raise InvalidName(
            f"invalid {kind} name {name!r}: use 1-63 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit, without '..'"
        )
    return name


def normal_name(text: str) -> str:
    """The one naming rule's normal form of `text` (datasets and models alike): lower case, runs of
    other characters as '-', trimmed to start with a letter or digit, at most 63 characters.
    `Iris.csv`'s stem `Iris` is `iris`; `My Model!` is `my-model`. The result may still fail
    `check_name` (an empty or all-symbol text), which then names the rule."""
    out = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower()).strip("-._")
    out = re.sub(r"\.{2,}", ".", out)
    return out[:63].rstrip("-._") or text
