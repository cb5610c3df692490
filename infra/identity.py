"""The local stack's identities, made once under FERMION_HOME and reused.

- `keys/signing.key` + `keys/signing.pub`: the Ed25519 pair that signs registered versions (the
  trainers and ingest sign, inference trusts `keys/*.pub`).
- `nats/users.json` and `nats/nats.conf`: one NATS user per role with a random password and subject
  permissions; there is no anonymous user, so a client without credentials is refused by the server.
- `admin.key`: an API key with the `admin` scope for the default tenant, which the CLI and the
  Python client on this machine use when FERMION_API_KEY is not set.

Every secret file is mode 0600.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from fermion.events import BusSettings, streams, subjects
from fermion.model_store import KeyStore, ObjectStore, generate_key_pair

ROLES = ("admin", "ingest", "trainer", "inference", "monitor")
_JS = "$JS.API"

# What each role may publish and subscribe to. JetStream's API is itself subjects: a role gets the
# calls its code makes and no more (no stream deletion outside admin, no job reads outside trainers
# and ingest, which counts a tenant's queued jobs for its quota).
_EVENTS, _JOBS = streams.EVENTS_STREAM, streams.JOBS_STREAM
_READ_EVENT_LOG = [
    f"{_JS}.STREAM.INFO.{_EVENTS}",
    f"{_JS}.CONSUMER.CREATE.{_EVENTS}",  # an ephemeral ordered consumer (nats-py names none)
    f"{_JS}.CONSUMER.CREATE.{_EVENTS}.>",
    f"{_JS}.CONSUMER.DELETE.{_EVENTS}.>",
    f"{_JS}.CONSUMER.INFO.{_EVENTS}.>",
    f"{_JS}.STREAM.MSG.GET.{_EVENTS}",
    "$JS.FC.>",
]
_PROVISION = [  # create or update the streams and the durable consumers (idempotent, at start)
    f"{_JS}.STREAM.CREATE.*",
    f"{_JS}.STREAM.UPDATE.*",
    f"{_JS}.STREAM.INFO.*",
    f"{_JS}.CONSUMER.CREATE.*",
    f"{_JS}.CONSUMER.CREATE.*.>",
    f"{_JS}.CONSUMER.DURABLE.CREATE.*.*",
    f"{_JS}.CONSUMER.INFO.*.*",
]
PERMISSIONS: dict[str, dict[str, list[str]]] = {
    "admin": {"publish": [">"], "subscribe": [">"]},
    "ingest": {
        "publish": [
            subjects.DATASETS_UPLOADED,
            subjects.TRAINING_REQUESTED,
            subjects.TRAINING_SWEEP,
            f"{subjects.TRAINING_CANCEL}.>",
            subjects.MODELS_PROMOTED,
            f"{subjects.MODELS_ROLLOUT}.started",  # a canary started over HTTP (its first step 100: promoted)
            f"{subjects.MODELS_ROLLOUT}.promoted",
            subjects.MODELS_LABELS,
            subjects.FEDERATED_REQUESTED,  # POST /v1/federations
            f"{subjects.AUDIT_PREFIX}.>",
            subjects.dead_letter(subjects.DATASETS_UPLOADED),  # drops refused by the S3 handler
            f"{_JS}.INFO",
            f"{_JS}.STREAM.INFO.{_JOBS}",
            f"{_JS}.STREAM.MSG.GET.{_JOBS}",
            f"{_JS}.CONSUMER.CREATE.{_EVENTS}",  # an ordered consumer reading the dead letters (/v1/dlq)
            *_READ_EVENT_LOG,
        ],
        "subscribe": ["_INBOX.>"],
    },
    "trainer": {
        "publish": [
            subjects.TRAINING_REQUESTED,  # pipelines and sweeps request trainings
            subjects.TRAINING_PROGRESS,
            subjects.TRAINING_COMPLETED,
            subjects.TRAINING_FAILED,
            f"{subjects.PREFIX}.models.>",
            f"{subjects.DLQ_PREFIX}.>",
            f"{_JS}.INFO",
            *_PROVISION,
            f"{_JS}.CONSUMER.MSG.NEXT.{_JOBS}.*",
            f"{_JS}.CONSUMER.MSG.NEXT.{_EVENTS}.{streams.PIPELINE_DURABLE}",
            f"{_JS}.CONSUMER.MSG.NEXT.{_EVENTS}.{streams.RETRAIN_DURABLE}",
            f"{_JS}.STREAM.MSG.GET.*",
            f"{_JS}.STREAM.MSG.DELETE.{_JOBS}",
            f"{_JS}.CONSUMER.DELETE.{_EVENTS}.>",
            "$JS.ACK.>",
            "$JS.FC.>",
        ],
        "subscribe": [
            "_INBOX.>",
            f"{subjects.TRAINING_CANCEL}.>",
            subjects.max_deliveries_advisory(_JOBS, "*"),
        ],
    },
    "inference": {
        "publish": [f"{subjects.AUDIT_PREFIX}.>", subjects.TELEMETRY, f"{_JS}.INFO"],
        "subscribe": ["_INBOX.>"],
    },
    "monitor": {  # drift windows and the rollout controller
        "publish": [f"{subjects.PREFIX}.models.>", f"{_JS}.INFO", *_PROVISION, *_READ_EVENT_LOG],
        "subscribe": ["_INBOX.>", subjects.TELEMETRY],
    },
}


@dataclass(frozen=True)
class LocalIdentity:
    """The identity files under one FERMION_HOME."""

    home: Path

    @property
    def signing_key(self) -> Path:
        return self.home / "keys" / "signing.key"

    @property
    def nats_config(self) -> Path:
        return self.home / "nats" / "nats.conf"

    @property
    def admin_key_file(self) -> Path:
        return self.home / "admin.key"

    def ensure(self, store: ObjectStore) -> LocalIdentity:
        """Make whatever is missing: the signing pair, NATS users and config, the admin API key."""
        generate_key_pair(self.home / "keys")
        users = self._users()
        _write_secret(self.nats_config, _nats_config(users))
        if not self.admin_key_file.exists():
            _, key = KeyStore(store).create("default", ["admin"], name="local admin (fermion up)")
            _write_secret(self.admin_key_file, key + "\n")
        return self

    def nats_password(self, role: str) -> str:
        """The password of `role`'s NATS user."""
        return self._users()[role]

    def admin_key(self) -> str | None:
        """The local admin API key, if `fermion up` made one here."""
        return self.admin_key_file.read_text().strip() if self.admin_key_file.exists() else None

    def env(self, role: str) -> dict[str, str]:
        """The environment a function of `role` needs to connect and sign."""
        out = {"FERMION_NATS_USER": role, "FERMION_NATS_PASSWORD": self.nats_password(role)}
        if role in ("ingest", "trainer"):
            out["FERMION_SIGNING_KEY_FILE"] = str(self.signing_key)
        return out

    def bus_settings(self, role: str, nats_url: str) -> BusSettings:
        """How `role` connects to the local nats-server."""
        return BusSettings(nats_url=nats_url, nats_user=role, nats_password=SecretStr(self.nats_password(role)))

    def _users(self) -> dict[str, str]:
        path = self.home / "nats" / "users.json"
        users: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        if missing := [r for r in ROLES if r not in users]:
            users.update({r: secrets.token_urlsafe(24) for r in missing})
            _write_secret(path, json.dumps(users, indent=2))
        return users


def _nats_config(users: dict[str, str]) -> str:
    entries = []
    for role in ROLES:
        perms = PERMISSIONS[role]
        entries.append(
            {
                "user": role,
                "password": users[role],
                "permissions": {
                    "publish": {"allow": perms["publish"]},
                    "subscribe": {"allow": perms["subscribe"]},
                },
            }
        )
    # nats-server's configuration format accepts JSON for a block's value.
    return "# Generated by fermion (infra/identity.py); regenerated on every start.\n" + (
        "authorization " + json.dumps({"users": entries}, indent=2) + "\n"
    )


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
