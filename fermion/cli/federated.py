"""`fermion federated ...`: start a federation and follow its rounds, over the ingest function's HTTP API.

    fermion federated keygen site-a.pem          a participant's key pair; prints the public key
    fermion federated start spec.json            POST /v1/federations; prints the federation id
    fermion federated start spec.json --epsilon 8 --delta 1e-5   ... with a privacy budget
    fermion federated rounds FEDERATION_ID       each closed round: version, accuracy, participants, ε spent

The spec file is a FederationSpec (events/federation.py) whose `holdout` names an uploaded dataset
({"name": ..., "sha256"?: ...}); a full address ({"uri": ...}) is sent as its name and sha256.
From Python: `Client.from_settings().start_federation(spec)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from fermion.client import Client, FermionError

from .console import Output, OutputOption, emit

app = typer.Typer(
    help="Federated training: rounds over events, data stays with its participants.", no_args_is_help=True
)
console = Console()


def load_spec(path: Path) -> dict[str, Any]:
    """A spec from JSON, its held-out set named (as POST /v1/federations takes it)."""
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        raise FermionError(f"{path} is not JSON: {exc}") from exc
    holdout = raw.get("holdout")
    if isinstance(holdout, dict) and "uri" in holdout:  # a full address: the platform finds it by name and hash
        raw["holdout"] = {k: holdout[k] for k in ("name", "sha256") if holdout.get(k)}
    return raw


def _client() -> Client:
    """The client of FERMION_URL (or the local stack); a command closes it when done."""
    return Client.from_settings()


@app.command("keygen")
def keygen(path: Annotated[Path, typer.Argument(help="PEM file for the participant's private key")]) -> None:
    """Make a participant's Ed25519 key pair (kept if it exists); prints the public key for the spec."""
    from fermion.model_store.signing import SigningKey  # the key pair only (the serve extra): no store is opened

    console.print(SigningKey.load_or_create(path).public_key.hex())


@app.command("start")
def start(
    spec_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="FederationSpec as JSON")],
    output: OutputOption = Output.table,
    epsilon: Annotated[
        float | None, typer.Option(help="privacy budget: stop before a round that would spend more epsilon")
    ] = None,
    delta: Annotated[float | None, typer.Option(help="the delta the epsilon is accounted at (default 1e-5)")] = None,
) -> None:
    """Start a federation (the platform publishes federated.requested); prints the federation id."""
    spec = load_spec(spec_file)
    if epsilon is not None or delta is not None:
        privacy = spec.get("privacy")
        if not isinstance(privacy, dict) or not privacy.get("noise_multiplier"):
            raise FermionError(
                'a privacy budget needs "privacy": {"clip_norm": ..., "noise_multiplier": ...} in the spec'
            )
        privacy.update({k: v for k, v in {"epsilon": epsilon, "delta": delta}.items() if v is not None})
    with _client() as client:
        out = client.start_federation(spec)
    print(out["federation_id"]) if output is Output.table else emit(out, output)


@app.command("rounds")
def rounds(
    federation_id: Annotated[str, typer.Argument(help="the federation id")], output: OutputOption = Output.table
) -> None:
    """Each closed round of a federation: its version, held-out accuracy, participants and privacy spent."""
    with _client() as client:
        closed = client.federation_rounds(federation_id)
    emit(
        closed,
        output,
        ("round", "version", "accuracy", "examples", "ε round", "ε total", "participants"),
        lambda r: [
            r["round"],
            r["version"],
            f"{r['metrics']['accuracy']:.4f}",
            r["n_examples"],
            _epsilon(r, "epsilon_round"),
            _epsilon(r, "epsilon_total"),
            ", ".join(r["participants"]),
        ],
    )
    last = (closed[-1].get("privacy") or {}) if closed else {}
    if output is Output.table and last.get("epsilon_budget") is not None:
        spent = f"epsilon {last['epsilon_total']:.3f} of {last['epsilon_budget']:g} spent (delta {last['delta']:g})"
        if last.get("budget_allows_next_round"):
            console.print(f"privacy budget: {spent}")
        else:
            then = last["epsilon_after_next_round"]
            console.print(f"privacy budget: {spent}; another round would bring it to {then:.3f}: the federation stops")


def _epsilon(r: dict[str, Any], key: str) -> str:
    value = (r.get("privacy") or {}).get(key)
    return "-" if value is None else f"{value:.3f}"
