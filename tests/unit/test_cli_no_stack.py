"""With no stack answering, every command says so and how to fix it, never `[Errno 111]` (issue 27)."""

from __future__ import annotations

import pytest

from fermion.cli import main
from fermion.cli.stack import UP_SETTINGS
from tests.helpers import free_port

# One command of each group that talks to the platform (reads, and writes sent without a retry key).
COMMANDS = [
    ["models", "list"],
    ["models", "versions", "iris"],
    ["models", "show", "iris:1"],
    ["models", "promote", "iris", "2"],
    ["runs", "list"],
    ["runs", "show", "abc"],
    ["runs", "compare", "abc", "abd"],
    ["jobs", "list"],
    ["jobs", "show", "abc"],
    ["jobs", "dlq", "list"],
    ["canary", "status", "iris"],
    ["canary", "abort", "iris"],
    ["federated", "rounds", "f1"],
    ["keys", "create", "--tenant", "acme", "--scopes", "read"],
    ["keys", "list"],
    ["pipelines", "list"],
    ["models", "drift", "iris"],
    ["train", "--list"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_no_stack_is_said_with_the_fix(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # a port nothing listens on
    monkeypatch.setenv("FERMION_URL", closed)
    monkeypatch.setenv("FERMION_API_KEY", "fmn_unused_key")
    monkeypatch.setattr("sys.argv", ["fermion", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: no Fermion stack answers at {closed} — start one with `fermion up` or set FERMION_URL"


def test_up_help_lists_every_setting_with_its_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr("sys.argv", ["fermion", "up", "--help"])
    with pytest.raises(SystemExit):
        main()
    shown = capsys.readouterr().out
    for name in [*UP_SETTINGS, "store_url"]:
        assert f"FERMION_{name.upper()} (default " in shown, name
    assert "FERMION_INGEST_PORT (default 8001)" in shown and "FERMION_HOME (default ~/.fermion)" in shown
