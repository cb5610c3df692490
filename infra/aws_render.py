"""A Fermion deployment on AWS, rendered to a directory and deployed from it (`fermion deploy aws`).

`render` bootstraps the deployment's identity under DIR/identity (infra/identity.py: the signing pair,
NATS users, the first admin key) and writes, all offline:

    DIR/secrets/*.json|conf   each Secrets Manager entry's payload (0600), named in DIR/aws.json
    DIR/serverless.json       the params of serverless.yml (the Lambda functions)
    DIR/ecs-params.json       the parameters of DIR/ecs.yml (infra/aws/ecs.yml: trainers, monitor, NATS)
    DIR/aws.json              the target (stage, region) and the secrets' names and files

`deploy_commands` lists what `deploy` runs, in order: the secrets (created, or given a new value), the
ECS stack, `serverless deploy`, and the one-off provisioning task (JetStream's streams, the admin
record). Nothing here calls AWS; `deploy` runs the `aws` and `npx` commands.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .identity import LocalIdentity

REPO = Path(__file__).resolve().parents[1]
ECS_TEMPLATE = REPO / "infra" / "aws" / "ecs.yml"
NATS_ROLES = ("ingest", "trainer", "monitor", "admin")  # inference on Lambda never connects to NATS


@dataclass(frozen=True)
class AwsTarget:
    """Where and what to deploy; empty network ids are filled in before a real deploy."""

    bucket: str
    stage: str = "dev"
    region: str = "us-east-1"
    image_uri: str = ""
    trainer_image_uri: str = ""
    vpc_id: str = ""
    subnet_ids: str = ""
    security_group_id: str = ""
    route_table_ids: str = ""
    concurrency: int | None = None

    def missing(self) -> list[str]:
        """The settings a real deploy needs that are still empty."""
        needed = ("image_uri", "trainer_image_uri", "vpc_id", "subnet_ids", "security_group_id")
        return [n for n in needed if not getattr(self, n)]

    def secret(self, name: str) -> str:
        """A Secrets Manager name of this stage (`fermion/STAGE/NAME`), as the templates spell it."""
        return f"fermion/{self.stage}/{name}"


@dataclass(frozen=True)
class Rendered:
    """What `render` wrote."""

    dir: Path
    files: list[Path]
    secrets: dict[str, Path]
    admin_key_file: Path
    admin_key_new: bool
    missing: list[str]


def serverless_params(t: AwsTarget) -> dict[str, str]:
    """serverless.yml's params for the target."""
    params = {
        "imageUri": t.image_uri,
        "bucket": t.bucket,
        "subnetIds": t.subnet_ids,
        "securityGroupIds": t.security_group_id,
        "vpcId": t.vpc_id,
        "routeTableIds": t.route_table_ids,
        "natsIngestSecret": t.secret("nats/ingest"),
        "trustedKeysSecret": t.secret("trusted-keys"),
    }
    if t.concurrency is not None:
        params["concurrency"] = str(t.concurrency)
    return {k: v for k, v in params.items() if v}  # serverless refuses an empty --param: the default stands


def ecs_params(t: AwsTarget) -> dict[str, str]:
    """infra/aws/ecs.yml's parameters for the target."""
    return {
        "Stage": t.stage,
        "Bucket": t.bucket,
        "VpcId": t.vpc_id,
        "SubnetIds": t.subnet_ids,
        "LambdaSecurityGroupId": t.security_group_id,
        "ImageUri": t.trainer_image_uri,
    }


def _payloads(t: AwsTarget, identity: LocalIdentity) -> dict[str, tuple[str, str]]:
    """Secret name → (file name, payload)."""
    out = {
        t.secret(f"nats/{role}"): (
            f"nats-{role}.json",
            json.dumps({"username": role, "password": identity.nats_password(role)}),
        )
        for role in NATS_ROLES
    }
    out[t.secret("nats/server-config")] = ("nats-server-config.conf", identity.nats_config.read_text())
    out[t.secret("signing-key")] = ("signing-key.pem", identity.signing_key.read_text())
    out[t.secret("trusted-keys")] = (
        "trusted-keys.json",
        json.dumps({"trusted_keys": json.dumps([identity.public_key()])}),
    )
    out[t.secret("admin-record")] = ("admin-record.json", identity.admin_record_file.read_text())
    return out


def _write_private(path: Path, text: str) -> None:
    """Write `path` readable by its owner only (0600 before the first byte)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def render(directory: Path, target: AwsTarget) -> Rendered:
    """Bootstrap the identity and write every file a deploy of `target` needs into `directory`."""
    identity = LocalIdentity(directory / "identity")
    new = identity.ensure_files(name=f"first admin (fermion deploy aws, {target.stage})")
    files: list[Path] = []
    secrets: dict[str, Path] = {}
    for name, (filename, payload) in _payloads(target, identity).items():
        path = directory / "secrets" / filename
        _write_private(path, payload)
        secrets[name] = path
        files.append(path)
    documents: dict[str, Any] = {
        "serverless.json": serverless_params(target),
        "ecs-params.json": ecs_params(target),
        "aws.json": {"target": asdict(target), "secrets": {k: str(v) for k, v in secrets.items()}},
    }
    for filename, doc in documents.items():
        (directory / filename).write_text(json.dumps(doc, indent=2) + "\n")
        files.append(directory / filename)
    shutil.copyfile(ECS_TEMPLATE, directory / "ecs.yml")
    files.append(directory / "ecs.yml")
    return Rendered(directory, files, secrets, identity.admin_key_file, new, target.missing())


def load(directory: Path) -> tuple[AwsTarget, dict[str, Path]]:
    """The target and the secrets' files a render wrote into `directory`."""
    doc = json.loads((directory / "aws.json").read_text())
    return AwsTarget(**doc["target"]), {k: Path(v) for k, v in doc["secrets"].items()}


def deploy_commands(directory: Path) -> list[list[str]]:
    """Every command a deploy of `directory` runs, in order (secrets, ECS stack, Lambda, provisioning)."""
    t, secrets = load(directory)
    aws = ["aws", "--region", t.region]
    out = [
        [*aws, "secretsmanager", "create-secret", "--name", name, "--secret-string", f"file://{path}"]
        for name, path in secrets.items()
    ]
    overrides = [f"{k}={v}" for k, v in json.loads((directory / "ecs-params.json").read_text()).items()]
    stack = ["--stack-name", f"fermion-{t.stage}-ecs", "--capabilities", "CAPABILITY_NAMED_IAM"]
    template = ["--template-file", str(directory / "ecs.yml")]
    out.append([*aws, "cloudformation", "deploy", *template, *stack, "--parameter-overrides", *overrides])
    params = json.loads((directory / "serverless.json").read_text())
    sls = ["npx", "serverless", "deploy", "--stage", t.stage, "--region", t.region]
    out.append([*sls, *(f"--param={k}={v}" for k, v in params.items())])
    vpc = f"subnets=[{t.subnet_ids}],securityGroups=[{t.security_group_id}],assignPublicIp=DISABLED"
    task = [
        "--task-definition",
        f"fermion-{t.stage}-provision",
        "--network-configuration",
        f"awsvpcConfiguration={{{vpc}}}",
    ]
    out.append([*aws, "ecs", "run-task", "--cluster", f"fermion-{t.stage}", "--launch-type", "FARGATE", *task])
    return out


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=REPO, capture_output=True, text=True, check=False)


def deploy(directory: Path, run: Runner = _run) -> list[list[str]]:
    """Run `deploy_commands` in order (a secret that exists gets a new value); the commands run.

    Raises RuntimeError naming the command that failed, with its output.
    """
    t, _ = load(directory)
    if missing := t.missing():
        raise RuntimeError(f"render again with {', '.join('--' + m.replace('_', '-') for m in missing)}")
    done: list[list[str]] = []
    for argv in deploy_commands(directory):
        result = run(argv)
        if result.returncode != 0 and "create-secret" in argv and "ResourceExistsException" in result.stderr:
            i = argv.index("create-secret")
            argv = [*argv[:i], "put-secret-value", "--secret-id", *argv[i + 2 :]]
            result = run(argv)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:6])} ... failed ({result.returncode}): {result.stderr[-2000:]}")
        done.append(list(argv))
    return done
