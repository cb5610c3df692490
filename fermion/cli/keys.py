"""`fermion keys ...`: API keys (an admin key is needed; `fermion up` made one for this machine)."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from fermion.client import Client, FermionError

from .console import Output, OutputOption, console, emit

keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> float:
    """'30d', '12h', '90m' or '45s' in seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise FermionError(f"--expires takes a number and a unit (s, m, h, d), like 30d; got {text!r}")
    return float(m[1]) * _SECONDS[m[2]]


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="the tenant the key acts for")],
    scopes: Annotated[str, typer.Option(help="comma-separated: upload,train,promote,infer,read,admin")],
    expires: Annotated[str | None, typer.Option(help="lifetime, like 30d or 12h (default: never)")] = None,
    name: Annotated[str, typer.Option(help="what the key is for")] = "",
    output: OutputOption = Output.table,
) -> None:
    """Create a key; it is printed once, as the last line (`-o json|yaml`: the answer, `key` in it)."""
    with Client.from_settings() as client:  # closed: a command run in-process leaves no socket behind
        out = client.create_key(
            tenant,
            [s.strip() for s in scopes.split(",") if s.strip()],
            name=name,
            expires_in_s=seconds(expires) if expires else None,
        )
    if output is not Output.table:
        return emit(out, output)
    console.print(f"key {out['key_id']} for tenant {out['tenant']} ({', '.join(out['scopes'])})", highlight=False)
    if out.get("expires_at"):
        console.print(f"expires {out['expires_at']}", highlight=False)
    print(out["key"])  # plain, last: scripts take the last line
    return None


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's keys")] = None,
    output: OutputOption = Output.table,
) -> None:
    """Keys, masked, with their scopes and state."""
    with Client.from_settings() as client:
        keys = client.keys(tenant)
    emit(
        keys,
        output,
        ("key", "tenant", "name", "scopes", "created", "expires", "state"),
        lambda k: [
            k["masked"],
            k["tenant"],
            k["name"],
            ",".join(k["scopes"]),
            k["created_at"][:19],
            k["expires_at"] or "-",
            "revoked" if k["revoked_at"] else "active",
        ],
    )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key id (the part after fmn_)")], output: OutputOption = Output.table
) -> None:
    """Revoke a key; warm functions refuse it within seconds."""
    with Client.from_settings() as client:
        out = client.revoke_key(key_id.removeprefix("fmn_").split("_")[0])
    if output is not Output.table:
        return emit(out, output)
    console.print(f"revoked {out['masked']} (tenant {out['tenant']})", highlight=False)
    return None
