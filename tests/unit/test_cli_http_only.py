"""Every CLI command reaches the platform over HTTP (issue 23): none opens the store or NATS itself.

Read from the code (AST): `fermion/cli/*.py` (but `stack.py`, whose `up` and `demo` start the local
stack) and the client (`fermion/client.py`, `fermion/control_plane.py`) may not import the registry,
the bus, a function, or the parts of `fermion.infra` that start or provision things. What they may
import of those packages is named below, each with why it opens nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCAL_STACK = {"stack.py"}  # `fermion up` / `fermion demo`: they start the stack, so they open it
# `fermion deploy ...` builds, starts and provisions a deployment on this machine (docker, kubectl, aws).
LOCAL_STACK |= {"deploy.py", "deploy_compose.py", "deploy_k8s.py", "deploy_aws.py"}
FORBIDDEN = ("fermion.model_store", "fermion.events.bus", "fermion.functions", "fermion.infra")
# (module, name) pairs that open nothing.
ALLOWED = {
    ("fermion.model_store.signing", "SigningKey"),  # `federated keygen`: a key pair in a file
    ("fermion.model_store", "check_name"),  # the naming rule, checked before a request is sent
    ("fermion.model_store", "normal_name"),  # likewise
    ("fermion.model_store", "RegistryError"),  # an exception class: what `up`/`demo` may raise, shown as one line
    ("fermion.infra", "ServerError"),  # likewise
    ("fermion.infra", "StackSettings"),  # where the local stack answers (ports, home): settings, no I/O
    ("fermion.infra.identity", "LocalIdentity"),  # the local admin key file, read when FERMION_API_KEY is unset
}
# Names from fermion.events that talk to NATS (the package re-exports them from events/bus.py).
BUS_NAMES = {"Bus", "BusError", "connect"}


def _imports(path: Path) -> list[tuple[str, str, int]]:
    """(module, name, line) of every import in the file, function-local ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.module, a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names]
    return found


def _opens(module: str, name: str) -> bool:
    if (module, name) in ALLOWED:
        return False
    if module == "fermion.events" and name in BUS_NAMES:
        return True
    full = f"{module}.{name}" if name else module
    return any(full == f or full.startswith(f + ".") or module == f or module.startswith(f + ".") for f in FORBIDDEN)


FILES = sorted(p for p in (REPO / "fermion" / "cli").glob("*.py") if p.name not in LOCAL_STACK)


CLIENT = [REPO / "fermion" / "client.py", REPO / "fermion" / "control_plane.py"]


@pytest.mark.parametrize("path", [*FILES, *CLIENT], ids=lambda p: p.name)
def test_commands_and_the_client_open_neither_the_store_nor_nats(path: Path) -> None:
    bad = [f"line {line}: {m}{'.' + n if n else ''}" for m, n, line in _imports(path) if _opens(m, n)]
    assert not bad, f"{path.relative_to(REPO)} reaches the platform around its HTTP API: {bad}"


def test_the_check_sees_what_the_commands_used_to_import() -> None:
    """The imports the commands had before they went over HTTP are caught."""
    before = [
        ("fermion.model_store", "open_registry"),
        ("fermion.model_store", "Rollouts"),
        ("fermion.events", "Bus"),
        ("fermion.events.bus", "Bus"),
        ("fermion.functions.federated.store", "FederationStore"),
        ("fermion.model_store.settings", "SigningSettings"),
        ("fermion.infra", "Stack"),
        ("fermion.infra.nats", "NatsServer"),
        ("fermion.model_store", "Runs"),  # cli/runs.py read the run records in the store
    ]
    assert all(_opens(m, n) for m, n in before)
    assert not any(_opens(m, n) for m, n in ALLOWED)
