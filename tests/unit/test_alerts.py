"""Alerts and dashboards as code: `promtool` checks and unit-tests the rules; the dashboard's queries parse.

promtool comes from Debian's `prometheus` package, which ./scripts/setup installs when it is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

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


def _dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


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
    used = set(re.findall(r"\b(fermion_[a-z_]+)", RULES.read_text() + " ".join(_dashboard_queries())))
    base = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert base <= documented, f"undocumented: {sorted(base - documented)}"
