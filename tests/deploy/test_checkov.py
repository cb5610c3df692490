"""checkov over serverless.yml, infra/docker and infra/k8s (as kustomize renders it: base, components
and overlays): no finding left unfixed or unexplained."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fermion.infra import checkov

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(not checkov.installed(), reason="checkov's environment: ./scripts/setup creates it"),
]


@pytest.mark.timeout(240)
def test_checkov_finds_nothing_unsuppressed() -> None:
    cmd = [str(checkov.executable()), "-d", str(REPO), "--framework", "serverless", "dockerfile", "kustomize"]
    for skipped in ("node_modules", ".venv", "tests", "bench", "build"):
        cmd += ["--skip-path", skipped]
    # --skip-download: no guideline fetch (tests run offline).
    out = subprocess.run(
        [*cmd, "--quiet", "--skip-download", "--output", "json"], capture_output=True, text=True, timeout=230
    )
    reports = json.loads(out.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    scanned = {r["check_type"]: r["summary"] for r in reports}
    assert set(scanned) == {"serverless", "dockerfile", "kustomize"}, scanned
    for kind, summary in scanned.items():
        assert summary["parsing_errors"] == 0, (kind, summary)
        assert summary["passed"] > 0, (kind, summary)
    failed = [(c["check_id"], c["resource"], c["file_path"]) for r in reports for c in r["results"]["failed_checks"]]
    assert not failed, failed


@pytest.mark.timeout(240)
def test_checkov_finds_nothing_in_the_rendered_aws_deployment(tmp_path: Path) -> None:
    """The ECS stack as `fermion deploy aws render` writes it (serverless.yml is scanned above)."""
    from fermion.infra.aws_render import AwsTarget, render

    render(tmp_path, AwsTarget("fermion-checkov", vpc_id="vpc-1", subnet_ids="subnet-a,subnet-b"))
    cmd = [str(checkov.executable()), "-d", str(tmp_path), "--framework", "cloudformation", "--skip-path", "identity"]
    out = subprocess.run(
        [*cmd, "--quiet", "--skip-download", "--output", "json"], capture_output=True, text=True, timeout=230
    )
    report = json.loads(out.stdout)
    assert report["check_type"] == "cloudformation", report
    assert report["summary"]["parsing_errors"] == 0 and report["summary"]["passed"] > 0, report["summary"]
    assert not [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
