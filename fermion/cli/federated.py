"""`fermion federated ...` and the Python way to start a federation.

    fermion federated keygen site-a.pem          a participant's key pair; prints the public key
    fermion federated start spec.json            publishes federated.requested; prints the federation id
    fermion federated rounds FEDERATION_ID       each closed round: version, accuracy, participants

The spec file is a FederationSpec (events/schemas.py) whose `holdout` may name an uploaded
dataset ({"name": ..., "sha256"?: ...}) instead of giving its full address.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from fermion.events import Bus, BusError, BusSettings
from fermion.events.federation import FederationRequested, FederationSpec
from fermion.model_store import DatasetStore, RegistryError, StoreSettings, open_registry
from fermion.model_store.signing import SigningKey

app = typer.Typer(
    help="Federated training: rounds over events, data stays with its participants.", no_args_is_help=True
)
console = Console()


async def start_federation_async(spec: FederationSpec, *, nats: BusSettings, tenant: str = "default") -> str:
    """Publish `federated.requested` for `spec` (as the identity `nats` gives); returns the federation id."""
    event = FederationRequested(tenant=tenant, data=spec)
    bus = await Bus.from_settings(nats, name="fermion-cli")
    try:
        await bus.publish(event)
    finally:
        await bus.close()
    return event.id


def start_federation(spec: FederationSpec, *, nats_url: str | None = None, tenant: str = "default") -> str:
    """Start a federation (blocking); returns its id. `python -m fermion.functions.federated` runs it."""
    if nats_url is not None:
        nats = BusSettings(nats_url=nats_url)
    else:  # this machine's stack: its admin NATS identity (or FERMION_NATS_* settings)
        from fermion.client import local_bus_settings

        nats = local_bus_settings()
    return asyncio.run(start_federation_async(spec, nats=nats, tenant=tenant))


def load_spec(path: Path, store: StoreSettings) -> FederationSpec:
    """A spec from JSON, its held-out set resolved in the store when only named."""
    raw: dict[str, Any] = json.loads(path.read_text())
    holdout = raw.get("holdout") or {}
    if "uri" not in holdout and "name" in holdout:
        stored = DatasetStore(open_registry(store).store).find(store.tenant, holdout["name"], holdout.get("sha256"))
        raw["holdout"] = {
            "name": holdout["name"],
            "sha256": stored.sha256,
            "uri": stored.uri,
            "format": stored.format,
            "size": stored.size,
        }
    return FederationSpec.model_validate(raw)


@app.command("keygen")
def keygen(path: Annotated[Path, typer.Argument(help="PEM file for the participant's private key")]) -> None:
    """Make a participant's Ed25519 key pair (kept if it exists); prints the public key for the spec."""
    console.print(SigningKey.load_or_create(path).public_key.hex())


@app.command("start")
def start(
    spec_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="FederationSpec as JSON")],
) -> None:
    """Publish federated.requested; prints the federation id."""
    store = StoreSettings()
    try:
        spec = load_spec(spec_file, store)
        console.print(start_federation(spec, tenant=store.tenant))
    except (ValidationError, ValueError, RegistryError, BusError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from exc


@app.command("rounds")
def rounds(federation_id: Annotated[str, typer.Argument(help="the federation id")]) -> None:
    """Each closed round of a federation: its version, held-out accuracy and participants."""
    from fermion.functions.federated.store import FederationStore

    store = StoreSettings()
    try:
        fstore = FederationStore(open_registry(store).store, store.tenant, federation_id)
        table = Table("round", "version", "accuracy", "examples", "participants")
        r = 1
        while (result := fstore.result(r)) is not None:
            table.add_row(
                str(r),
                str(result["version"]),
                f"{result['metrics']['accuracy']:.4f}",
                str(result["n_examples"]),
                ", ".join(result["participants"]),
            )
            r += 1
    except RegistryError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(table)
