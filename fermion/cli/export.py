"""`fermion models export NAME[:VERSION|@ALIAS] --edge`: a registered version → one signed edge bundle.

The platform builds it (POST /v1/models/{name}/edge: pruned and fine-tuned on the run's own
training split when its dataset is still in the store, quantised, ORT format, judged on the same
held-out split, signed with the platform's key); this command writes the archive it answers with
and prints what the bundle's manifest says.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from fermion.client import Client, FermionError

console = Console()
# The bundle's signature member: 64 bytes of Ed25519 signature, then the signer's 32-byte public key.
SIGNATURE = "SIGNATURE"


def _client() -> Client:
    """The client of FERMION_URL (or the local stack); a command closes it when done."""
    return Client.from_settings()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _member(archive: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        f = tar.extractfile(name)
        if f is None:
            raise FermionError(f"the bundle has no {name}")
        return f.read()


def _ref(ref: str) -> tuple[str, dict[str, Any]]:
    """NAME, NAME:VERSION or NAME@ALIAS → the model name and the request's version or alias."""
    name, _, version = ref.partition(":")
    name, _, alias = name.partition("@")
    if version and (alias or not version.isdigit()):
        raise FermionError(f"invalid model reference {ref!r}: use NAME, NAME:VERSION or NAME@ALIAS")
    return name, {"version": int(version)} if version else {"alias": alias} if alias else {}


def export_command(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS")],
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write the bundle")],
    edge: Annotated[bool, typer.Option("--edge", help="a signed edge bundle with its runner")] = False,
    prune: Annotated[float, typer.Option(min=0.0, max=0.95, help="fraction of weights to prune")] = 0.0,
    quantize: Annotated[str, typer.Option(help="int8 or none")] = "none",
    format: Annotated[str, typer.Option("--format", help="ort (minimal builds) or onnx")] = "ort",
    accuracy_budget: Annotated[float, typer.Option(help="max accuracy drop vs the served version")] = 0.01,
    no_accuracy_check: Annotated[bool, typer.Option("--no-accuracy-check", help="ship unmeasured")] = False,
    max_bytes: Annotated[int | None, typer.Option(help="refuse a bundle larger than this")] = None,
    finetune_epochs: Annotated[int, typer.Option(min=0, help="fine-tune epochs after pruning")] = 3,
) -> None:
    """Export a version as a signed edge bundle (pruned, quantised, ORT format, with its runner)."""
    if not edge:
        console.print("[bold red]error:[/] only edge bundles are exported for now: add --edge")
        raise typer.Exit(1)
    if quantize not in ("int8", "none") or format not in ("ort", "onnx"):
        console.print("[bold red]error:[/] --quantize takes int8 or none; --format takes ort or onnx")
        raise typer.Exit(1)
    options: dict[str, Any] = {
        "prune": prune,
        "quantize": quantize,
        "format": format,
        "accuracy_budget": None if no_accuracy_check else accuracy_budget,
        "max_bytes": max_bytes,
        "finetune_epochs": finetune_epochs,
    }
    try:
        name, which = _ref(ref)
        with _client() as client:
            archive = client.export_edge(name, **which, **options)
    except FermionError as exc:
        # The platform's reason as it gives it: "refused: ..." for a missed budget, else "error: ...".
        said = str(exc).partition(" → ")[2].partition(": ")[2] or str(exc)
        refused = said.startswith("refused: ")
        console.print("[bold red]refused:[/] " if refused else "[bold red]error:[/] ", end="")
        console.print(said.removeprefix("refused: "), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    _write(output, archive)
    manifest = json.loads(_member(archive, "manifest.json"))
    summary = {
        "bundle": str(output),
        "bytes": len(archive),
        "sizes": manifest["sizes"],
        "accuracy": manifest["accuracy"],
        "cpu_latency_ms": manifest["cpu_latency_ms"],
        "public_key": _member(archive, SIGNATURE)[64:96].hex(),
    }
    console.print_json(json.dumps(summary))


def register(models_app: typer.Typer) -> None:
    """Add `export` to the `fermion models` group."""
    models_app.command("export")(export_command)
