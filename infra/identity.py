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
from fermion.model_store import KeyRecord, KeyStore, ObjectStore, generate_key_pair, mint_key

ROLES = ("admin", "ingest", "trainer", "inference", "monitor", "federated")
_JS = "$JS.API"
_EVENTS, _JOBS = streams.EVENTS_STREAM, streams.JOBS_STREAM

# Least privilege: each role may publish what its code publishes and call exactly the JetStream API
# its code calls (the API is itself subjects), and subscribe only to its own inbox (`_INBOX.<role>`,
# the prefix its connection uses: events/settings.py) plus the core-NATS subjects it listens on.
# Nobody but the admin may create, update, delete or purge a stream, nor create or delete a durable
# consumer: provisioning is the admin's step (infra/provision.py). tests/integration/test_bus_privileges.py
# checks every role against this table, both ways.


def _watch_event_log() -> list[str]:
    """Follow the event log (watch): an ordered consumer, which is unnamed, and its flow control."""
    return [
        f"{_JS}.CONSUMER.CREATE.{_EVENTS}",  # unnamed (nats-py's ordered consumer); never a durable's name
        f"$JS.FC.{_EVENTS}.>",
    ]


def _read_event_log() -> list[str]:
    """Every ordered read of the event log: history (the stream's subjects first), watch, last."""
    return [f"{_JS}.STREAM.INFO.{_EVENTS}", *_watch_event_log(), f"{_JS}.STREAM.MSG.GET.{_EVENTS}"]


def _consume(stream: str, durable: str) -> list[str]:
    """Pull from a durable consumer the admin made, and ack, nak, term or heartbeat what it delivers."""
    return [
        f"{_JS}.CONSUMER.INFO.{stream}.{durable}",
        f"{_JS}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
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
            f"{subjects.MODELS_ROLLOUT}.started",  # canary start over HTTP
            f"{subjects.MODELS_ROLLOUT}.promoted",  # canary finish over HTTP
            subjects.MODELS_LABELS,
            subjects.FEDERATED_REQUESTED,  # POST /v1/federations
            subjects.SCORING_REQUESTED,  # POST /v1/scorings, and drops under score/ (issue 26)
            f"{subjects.AUDIT_PREFIX}.>",
            subjects.dead_letter(subjects.DATASETS_UPLOADED),  # drops refused by the S3 handler
            subjects.dead_letter(subjects.SCORING_REQUESTED),  # score/ drops it cannot score
            f"{_JS}.STREAM.INFO.{_JOBS}",  # a tenant's queued jobs, for its quota and /v1/jobs
            f"{_JS}.STREAM.MSG.GET.{_JOBS}",
            *_read_event_log(),
        ],
        "subscribe": ["_INBOX.ingest.>"],
    },
    "trainer": {
        "publish": [
            subjects.TRAINING_REQUESTED,  # pipelines, retrains and sweeps request trainings
            subjects.TRAINING_PROGRESS,
            subjects.TRAINING_COMPLETED,
            subjects.TRAINING_FAILED,
            subjects.SCORING_PROGRESS,  # batch scoring (functions/trainer/scoring.py)
            subjects.SCORING_COMPLETED,
            subjects.SCORING_FAILED,
            subjects.FEDERATED_FAILED,  # a federation that killed its coordinator every time (service/reaper.py)
            subjects.MODELS_PUBLISHED,
            subjects.MODELS_PROMOTED,
            f"{subjects.MODELS_ROLLOUT}.started",  # a gate's canary
            f"{subjects.TRAINING_CANCEL}.>",  # a sweep's median pruner stops a trial by cancelling it
            f"{subjects.DLQ_PREFIX}.>",
            f"{_JS}.STREAM.INFO.{_JOBS}",
            f"{_JS}.STREAM.MSG.GET.{_JOBS}",  # the reaper reads a dead job by sequence
            f"{_JS}.STREAM.MSG.DELETE.{_JOBS}",  # ... and takes it out once dead-lettered
            # The trainer reaps the coordinators' jobs too: the coordinator holds no grant on the job queue.
            f"{_JS}.CONSUMER.INFO.{_JOBS}.{streams.FEDERATION_DURABLE}",
            *_consume(_JOBS, streams.TRAINER_DURABLE),
            *_consume(_JOBS, streams.SWEEP_DURABLE),
            *_consume(_JOBS, streams.SCORER_DURABLE),
            *_consume(_EVENTS, streams.PIPELINE_DURABLE),
            *_consume(_EVENTS, streams.RETRAIN_DURABLE),
            *_read_event_log(),  # a job's cancel request, a sweep's trials, the newest matching upload
        ],
        "subscribe": [
            "_INBOX.trainer.>",
            f"{subjects.TRAINING_CANCEL}.>",
            subjects.max_deliveries_advisory(_JOBS, "*"),
        ],
    },
    "inference": {
        "publish": [f"{subjects.AUDIT_PREFIX}.>", subjects.TELEMETRY],
        "subscribe": ["_INBOX.inference.>"],
    },
    "monitor": {  # drift windows and the rollout controller
        "publish": [
            f"{subjects.MODELS_ROLLOUT}.>",
            subjects.MODELS_DRIFT_DETECTED,
            subjects.MODELS_DRIFT_JUDGED,  # every window, for GET /v1/models/{name}/drift
            *_read_event_log(),  # labels and rollout starts
            # The trainers' backlog for its metrics: each consumer's info, not its messages.
            *(f"{_JS}.CONSUMER.INFO.{stream}.{durable}" for stream, durable in streams.TRAINER_CONSUMERS),
        ],
        "subscribe": ["_INBOX.monitor.>", subjects.TELEMETRY],
    },
    "federated": {  # the federation coordinator (functions/federated/coordinator.py, aggregator.py)
        "publish": [
            subjects.FEDERATED_ROUND_STARTED,  # each round's announcement, to the participants
            subjects.FEDERATED_ROUND_COMPLETED,
            subjects.FEDERATED_UPDATE_REFUSED,  # an update it will not apply, with the reason
            subjects.FEDERATED_COMPLETED,
            subjects.FEDERATED_FAILED,
            subjects.dead_letter(subjects.FEDERATED_REQUESTED),  # a malformed or failed federation, before its term
            *_consume(_JOBS, streams.FEDERATION_DURABLE),
            *_watch_event_log(),  # a round's updates, from the federation's start; never history or last
        ],
        "subscribe": ["_INBOX.federated.>"],  # no core-NATS subject: its updates come from the log
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

    @property
    def admin_record_file(self) -> Path:
        """The admin key's record (its hash, never the key), until a store holds it."""
        return self.home / "admin.record.json"

    def ensure(self, store: ObjectStore) -> LocalIdentity:
        """Make whatever is missing: the signing pair, NATS users and config, the admin API key."""
        self.ensure_files(name="local admin (fermion up)")
        self.register_admin(store)
        return self

    def ensure_files(self, name: str = "first admin (fermion deploy)") -> bool:
        """Make the files alone (no store needed: a deployment renders before it has one); True if the
        admin key is new here, so that the caller shows it once."""
        generate_key_pair(self.home / "keys")
        _write_secret(self.nats_config, _nats_config(self._users()))
        if self.admin_key_file.exists():
            return False
        record, key = mint_key("default", ["admin"], name=name)
        _write_secret(self.admin_record_file, record.model_dump_json(indent=2) + "\n")
        _write_secret(self.admin_key_file, key + "\n")
        return True

    def register_admin(self, store: ObjectStore) -> None:
        """Put the admin key's record in `store` (idempotent): from then on the key is accepted."""
        if self.admin_record_file.exists():
            KeyStore(store).add(KeyRecord.model_validate_json(self.admin_record_file.read_text()))

    def public_key(self) -> str:
        """The base64 public key that verifies what the signing key signs (inference's trusted key)."""
        return (self.home / "keys" / "signing.pub").read_text().strip()

    def nats_password(self, role: str) -> str:
        """The password of `role`'s NATS user."""
        return self._users()[role]

    def admin_key(self) -> str | None:
        """The local admin API key, if `fermion up` made one here."""
        return self.admin_key_file.read_text().strip() if self.admin_key_file.exists() else None

    def env(self, role: str) -> dict[str, str]:
        """The environment a function of `role` needs to connect and sign."""
        out = {"FERMION_NATS_USER": role, "FERMION_NATS_PASSWORD": self.nats_password(role)}
        if role != "admin":
            out["FERMION_PROVISION"] = "false"  # the admin provisioned; a role only checks (it holds no grant)
        if role in ("ingest", "trainer", "federated"):  # the coordinator registers each round's model
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
