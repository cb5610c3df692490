"""Where the bus is and who we are on it: the fields (`settings.py` reads them with pydantic-settings;
the inference function with `fermion.service.environment`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class BusConfig(BaseModel):
    """Settings shared by every unit that talks to NATS.

    Identity: a credentials file (`FERMION_NATS_CREDS`, NATS's .creds with JWT and nkey seed), an
    nkey seed file (`FERMION_NATS_NKEY_SEED`), or user and password (`FERMION_NATS_USER`,
    `FERMION_NATS_PASSWORD`, or on AWS `FERMION_NATS_PASSWORD_SECRET`: a Secrets Manager secret).
    TLS: `FERMION_NATS_TLS_CA` to verify the server, plus `FERMION_NATS_TLS_CERT` and
    `FERMION_NATS_TLS_KEY` for a client certificate.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    nats_url: str = Field(default="nats://127.0.0.1:4222", description="one URL, or several separated by commas")
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_password_file: Path | None = None
    """A file holding the password (a container's read-only secret mount), read when no password is set."""
    nats_password_secret: str | None = None
    """AWS Secrets Manager secret (ARN or name) holding the password, read when the unit connects
    (events/secrets.py); a deployment's alternative to a password in the environment."""
    nats_creds: Path | None = None
    nats_nkey_seed: Path | None = None
    nats_tls_ca: Path | None = None
    nats_tls_cert: Path | None = None
    nats_tls_key: Path | None = None
    stream_replicas: int = Field(default=1, ge=1, le=5)
    """Copies of each stream and consumer in a JetStream cluster (3 in production; 1 on one server)."""
    publish_timeout_s: float = Field(default=5.0, gt=0)
    """How long a publish waits for JetStream's acknowledgement before its outcome is unknown."""
    nats_inbox_prefix: str | None = None
    """Where replies to this unit's requests come back; default `_INBOX.<nats_user>` when a user is
    set, so a role's NATS permissions can let it subscribe to its own replies and no one else's."""
    provision: bool = True
    """Create or update the streams and durable consumers at start. A deployment turns it off: there
    provisioning is an admin step (`fermion up`, `python -m fermion.infra.provision`), the units'
    NATS identities hold no grant for it, and a unit only checks that what it consumes exists."""

    @model_validator(mode="after")
    def _password_from_file(self) -> BusConfig:
        if self.nats_password is None and self.nats_password_file is not None:
            password = SecretStr(self.nats_password_file.read_text().strip())
            object.__setattr__(self, "nats_password", password)
        return self

    def inbox_prefix(self) -> str | None:
        """The inbox prefix this unit's connection uses (None: nats-py's `_INBOX`)."""
        if self.nats_inbox_prefix:
            return self.nats_inbox_prefix
        return f"_INBOX.{self.nats_user}" if self.nats_user else None
