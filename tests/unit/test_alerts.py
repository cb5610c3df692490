"""Alerts and dashboards as code: `promtool` checks and unit-tests the rules; the dashboard's queries parse.

promtool comes from Debian's `prometheus` package, which ./scripts/setup installs when it is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "infra" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "infra" / "grafana" / "fermion.json"
DOCS = REPO / "docs" / "metrics.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (./scripts/setup installs Debian's prometheus package)"
)


def _promtool(*args: str, cwd: Path) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_every_alert_rule_passes_its_promtool_unit_tests() -> None:
    _promtool("check", "rules", RULES.name, cwd=RULES.parent)
    _promtool("test", "rules", "alerts_test.yml", cwd=RULES.parent)
    tested = set(re.findall(r"alertname: (\w+)", (RULES.parent / "alerts_test.yml").read_text()))
    defined = set(re.findall(r"- alert: (\w+)", RULES.read_text()))
    assert defined == tested, f"alerts without a promtool test: {defined - tested}"


# The dashboard's variables as promtool would see them chosen: every model, version and tenant.
VARIABLES = {"$model": ".*", "$version": ".*", "$tenant": ".*", "$__rate_interval": "5m"}


def _panels() -> list[dict[str, Any]]:
    """Every panel, those inside a collapsed row too."""
    top = json.loads(DASHBOARD.read_text())["panels"]
    return [q for p in top for q in (p, *p.get("panels", []))]


def _dashboard_queries() -> list[str]:
    queries = [t["expr"] for p in _panels() for t in p.get("targets", [])]
    for name, value in VARIABLES.items():
        queries = [q.replace(name, value) for q in queries]
    return queries


def test_the_dashboard_has_rows_variables_per_version_panels_and_units_that_fit() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "model", "version", "tenant"} <= variables
    rows = [p["title"] for p in _panels() if p["type"] == "row"]
    assert {"Inference", "Versions and canaries", "Monitor: online accuracy and drift"} <= set(rows), rows
    graphs = [p for p in _panels() if p["type"] != "row"]
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in graphs}
    # A canary is compared with its incumbent: per-version panels keep `version` (or the rollout's role).
    per_version = [t for t, e in exprs.items() if re.search(r"by \([^)]*\b(version|role)\b", e)]
    assert len(per_version) >= 8, per_version
    assert any("fermion_inference_request_duration_seconds_bucket" in exprs[t] for t in per_version)
    for p in graphs:
        unit, expr = p["fieldConfig"]["defaults"]["unit"], exprs[p["title"]]
        if unit in ("bytes", "Bps"):  # issue 27: a count plotted on a bytes axis
            assert all("bytes" in t["expr"] for t in p["targets"]), p["title"]
        if "duration_seconds" in expr or "_seconds{" in expr:
            assert unit == "s", p["title"]
    monitor = {m for e in exprs.values() for m in re.findall(r"fermion_monitor_[a-z0-9_]+", e)}
    assert {"fermion_monitor_rollout_error_ratio", "fermion_monitor_online_accuracy_ratio"} <= monitor


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 10
    recorded = [{"record": f"q{i}", "expr": q} for i, q in enumerate(queries)]
    rules = {"groups": [{"name": "dashboard", "rules": recorded}]}
    (tmp_path / "q.yml").write_text(json.dumps(rules))  # JSON is YAML: promtool parses every expression
    _promtool("check", "rules", "q.yml", cwd=tmp_path)


def test_every_metric_the_rules_and_dashboard_use_is_documented() -> None:
    documented = set(re.findall(r"`(fermion_\w+)`", DOCS.read_text()))
    used = set(re.findall(r"\b(fermion_[a-z0-9_]+)", RULES.read_text() + " ".join(_dashboard_queries())))
    base = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert base <= documented, f"undocumented: {sorted(base - documented)}"
