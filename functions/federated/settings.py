"""Settings of the coordinator and of a participant, from the environment (FERMION_ prefix)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from fermion.events import BusSettings
from fermion.model_store import StoreSettings


class CoordinatorSettings(StoreSettings, BusSettings):
    """One coordinator replica; replicas share the durable consumer of federation requests."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")  # both bases' (for mypy)

    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliver: int = Field(default=5, ge=1)
    retry_delay_s: float = Field(default=5.0, ge=0)


class ParticipantSettings(StoreSettings, BusSettings):
    """A participant: who it is, the key it signs with, and its local data (never uploaded)."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")  # both bases' (for mypy)

    participant_id: str = Field(min_length=1)
    participant_key: Path
    """PEM file of the participant's Ed25519 private key (its public key is in the federation spec)."""
    participant_data: Path
    """Local .npz with arrays x (rows of features) and y (labels, as named in the spec)."""
    lookback_s: float = Field(default=24 * 3600.0, gt=0)
    """On start, rounds announced this long ago are still considered (a restarted participant catches up)."""


@lru_cache(maxsize=1)
def get_coordinator_settings() -> CoordinatorSettings:
    """The coordinator's settings, read once."""
    return CoordinatorSettings()
