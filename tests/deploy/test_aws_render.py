"""`fermion deploy aws render|deploy`, run as the README's AWS walk-through spells it: the identity and
every secret's payload (0600, each where its reader expects it), the rendered params packaged by
`serverless package` and the ECS stack linted by cfn-lint (offline), `--dry-run` touching nothing,
and a deploy driving `aws` and `npx` (stand-ins on PATH that record their arguments)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fermion.cli import app
from fermion.model_store import Signer, Verifier
from tests.deploy.test_serverless import SERVERLESS, package

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.deploy
WALK_ENV = {
    "ECR": "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
    "LAMBDA_DIGEST": "sha256:" + "1" * 64,
    "TRAINER_DIGEST": "sha256:" + "2" * 64,
}


def readme_commands() -> list[list[str]]:
    """The `fermion deploy aws` commands of the README's AWS walk-through, variables expanded."""
    text = (REPO / "README.md").read_text()
    section = text.split("**AWS**", 1)[1].split("**Kubernetes", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    lines = [re.sub(r"\s+#.*$", "", line) for line in block.splitlines() if line.startswith("fermion deploy aws")]
    return [shlex.split(re.sub(r"\$(\w+)", lambda m: WALK_ENV[m.group(1)], line))[1:] for line in lines]


def _in(directory: Path, args: list[str]) -> list[str]:
    return [str(directory) if a == "deploy/aws" else a for a in args]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object], str]:
    directory = tmp_path_factory.mktemp("aws") / "deploy"
    render, *_ = readme_commands()
    assert render[:3] == ["deploy", "aws", "render"]
    done = CliRunner().invoke(app, [*_in(directory, render), "-o", "json"])
    assert done.exit_code == 0, done.output
    again = CliRunner().invoke(app, _in(directory, render))  # people's form: the key is not shown twice
    assert again.exit_code == 0 and "first admin key" not in again.output, again.output
    return directory, json.loads(done.stdout), again.output


def test_render_writes_the_identity_and_each_secret_where_its_reader_looks(
    rendered: tuple[Path, dict[str, object], str],
) -> None:
    _, out, _ = rendered
    secrets = {k: Path(v) for k, v in out["secrets"].items()}  # type: ignore[union-attr]
    for path in [*secrets.values(), Path(str(out["admin_key_file"]))]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert out["admin_key_new"] is True and out["missing"] == []
    assert {str(p) for p in secrets.values()} <= set(out["written"])  # type: ignore[arg-type]
    # The trainer's private key signs what inference's trusted public key verifies.
    signer = Signer.from_file(secrets["fermion/prod/signing-key"])
    trusted = json.loads(json.loads(secrets["fermion/prod/trusted-keys"].read_text())["trusted_keys"])
    Verifier.from_texts(trusted).verify(b"manifest", signer.sign(b"manifest"), "a version")  # raises if untrusted
    for role in ("ingest", "trainer", "monitor", "admin"):
        user = json.loads(secrets[f"fermion/prod/nats/{role}"].read_text())
        assert user["username"] == role and f'"password": "{user["password"]}"' in secrets[
            "fermion/prod/nats/server-config"
        ].read_text().replace('"password":"', '"password": "')
    record = json.loads(secrets["fermion/prod/admin-record"].read_text())
    key = Path(str(out["admin_key_file"])).read_text().strip()
    assert key not in json.dumps(record) and record["scopes"] == ["admin"]  # the hash only


@pytest.mark.skipif(not SERVERLESS.exists(), reason="needs `npm ci` (./scripts/setup runs it)")
def test_the_rendered_params_package_and_the_ecs_stack_lints(
    rendered: tuple[Path, dict[str, object], str], tmp_path: Path
) -> None:
    directory, _, _ = rendered
    params = json.loads((directory / "serverless.json").read_text())
    template = package(tmp_path / "package", params)
    assert template["Resources"]["IngestLambdaFunction"]["Properties"]["Code"]["ImageUri"] == params["imageUri"]
    lint = shutil.which("cfn-lint")
    if lint is None:
        pytest.skip("cfn-lint is not installed")
    done = subprocess.run([lint, str(directory / "ecs.yml")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _stand_ins(bin_dir: Path, log: Path, exists: str) -> dict[str, str]:
    """`aws` and `npx` that log their arguments; creating `exists` fails as AWS does for a taken name."""
    bin_dir.mkdir()
    script = (
        "#!/bin/sh\n"
        f'echo "$(basename "$0") $*" >> {shlex.quote(str(log))}\n'
        f'case "$*" in *"create-secret --name {exists} "*) echo "ResourceExistsException" >&2; exit 254;; esac\n'
    )
    for name in ("aws", "npx"):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_dry_run_prints_every_command_and_runs_none_then_deploy_runs_them(
    rendered: tuple[Path, dict[str, object], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, out, _ = rendered
    log = tmp_path / "calls.log"
    for name, value in _stand_ins(tmp_path / "bin", log, "fermion/prod/nats/ingest").items():
        monkeypatch.setenv(name, value)
    _, dry, real = readme_commands()
    printed = CliRunner().invoke(app, _in(directory, dry))
    assert printed.exit_code == 0, printed.output
    assert not log.exists()  # nothing ran
    lines = printed.stdout.strip().splitlines()
    assert sum("secretsmanager create-secret" in line for line in lines) == len(out["secrets"])  # type: ignore[arg-type]
    assert "cloudformation deploy" in lines[-3] and lines[-2].startswith("npx serverless deploy")
    assert "ecs run-task" in lines[-1] and "fermion-prod-provision" in lines[-1]
    assert not any(Path(str(p)).read_text() in printed.stdout for p in out["secrets"].values())  # type: ignore[union-attr]
    done = CliRunner().invoke(app, _in(directory, real))
    assert done.exit_code == 0, done.output
    calls = log.read_text().splitlines()
    assert "aws --region eu-west-1 secretsmanager put-secret-value --secret-id fermion/prod/nats/ingest" in "\n".join(
        calls
    )
    assert calls[-1].startswith("aws --region eu-west-1 ecs run-task")


def test_the_walkthrough_builds_images_lambda_accepts() -> None:
    """BuildKit's default is a multi-platform index with provenance attestations, which Lambda refuses."""
    section = (REPO / "README.md").read_text().split("**AWS**", 1)[1].split("**Kubernetes", 1)[0]
    builds = [line for line in section.splitlines() if line.startswith("docker build")]
    assert {"lambda.Dockerfile", "trainer.Dockerfile"} <= {w.rsplit("/", 1)[-1] for b in builds for w in b.split()}
    for line in builds:
        assert "--provenance=false" in line.split() and "--platform" in line.split(), line
        assert line.split()[line.split().index("--platform") + 1] == "linux/amd64", line
