"""Every AWS role against what its unit's code touches in the object store (tests/deploy/iam_prefixes.py
derives it from the code): no role holds a prefix its code never reaches, each prefix the code reaches
and the role lacks is withheld on purpose (the reason below), and every role that reads may list the
bucket unconditionally (otherwise S3 answers a missing key with 403, which the store calls unavailable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.iam_prefixes import prefixes
from tests.deploy.test_serverless import PARAMS, SERVERLESS, package

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(not SERVERLESS.exists(), reason="needs `npm ci` (./scripts/setup runs it)"),
]

ENTRIES = {
    "InferenceRole": "fermion.functions.inference.handler",
    "IngestRole": "fermion.functions.ingest.handler",
    "DropRole": "fermion.functions.ingest.s3_events",
    "TrainerTaskRole": "fermion.functions.trainer.__main__",
    "MonitorTaskRole": "fermion.functions.monitor.__main__",
    "ProvisionTaskRole": "fermion.infra.provision",
}
PROBE = "the registry's one-time conditional-write probe: this unit never writes through a registry"
WITHHELD = {
    "InferenceRole": {"_fermion": PROBE, "runs": "run records are ingest's (GET /v1/runs); inference names none"},
    "IngestRole": {},
    "DropRole": {
        "keys": "API keys authenticate HTTP callers; a bucket notification has none",
        "models": "a drop stores a dataset, never a version",
        "usage": "quotas are charged when ingest signs the upload URL, not when the drop lands",
        "scores": "a score/ drop is stored as a dataset and queued; the trainer writes the predictions",
    },
    "TrainerTaskRole": {},
    "MonitorTaskRole": {},
    "ProvisionTaskRole": {
        "_fermion": PROBE,
        "models": "it opens a registry only for its object store, to put the admin key's record",
        "incoming": "s3_drop_queue wires LocalStack's notifications for `fermion up --s3`, not a deployment",
    },
}


class _Cfn(yaml.SafeLoader):
    """CloudFormation's short tags (!Sub, !Ref, ...) read as their long form."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}


_Cfn.add_multi_constructor("!", _tag)


def ecs_template(path: Path = REPO / "infra" / "aws" / "ecs.yml") -> dict[str, Any]:
    """infra/aws/ecs.yml as CloudFormation reads it."""
    return dict(yaml.load(path.read_text(), Loader=_Cfn))


@pytest.fixture(scope="module")
def resources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    lambdas = package(tmp_path_factory.mktemp("sls") / "package", PARAMS)["Resources"]
    return {**lambdas, **ecs_template()["Resources"]}


def _key(arn: Any) -> str | None:
    """The object key pattern an S3 ARN grants ('' for the bucket itself); None for anything else."""
    text = arn.get("Fn::Sub", "") if isinstance(arn, dict) else str(arn)
    for bucket in (f"arn:aws:s3:::{PARAMS['bucket']}", "arn:${AWS::Partition}:s3:::${Bucket}"):
        if text == bucket or text.startswith(bucket + "/"):
            return text.removeprefix(bucket).lstrip("/")
    return None


def grants(role: dict[str, Any]) -> dict[str, set[str]]:
    """S3 action → the key patterns `role` grants it on; every S3 grant names this bucket."""
    out: dict[str, set[str]] = {}
    for policy in role["Properties"]["Policies"]:
        for st in policy["PolicyDocument"]["Statement"]:
            assert st["Effect"] == "Allow"
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            for action in (a for a in st["Action"] if a.startswith("s3:")):
                if action == "s3:ListBucket":
                    assert "Condition" not in st, "a conditional ListBucket turns a missing key into a 403"
                for arn in resources:
                    key = _key(arn)
                    assert key is not None, f"{action} on {arn}: not the model bucket"
                    assert key == "" or key.split("/")[0] not in ("*", ""), f"{action} on the whole bucket"
                    out.setdefault(action, set()).add(key)
    return out


@pytest.mark.parametrize("role", sorted(ENTRIES))
def test_each_role_grants_what_its_code_reaches_and_no_more(resources: dict[str, Any], role: str) -> None:
    granted = grants(resources[role])
    roots = {k.split("/")[0] for keys in granted.values() for k in keys if k}
    reached = prefixes(ENTRIES[role])
    assert roots <= reached, f"{role} grants {sorted(roots - reached)}, which its code never touches"
    assert reached - roots == set(WITHHELD[role]), f"{role}: the code reaches {sorted(reached - roots)} too"
    if "s3:GetObject" in granted:
        assert granted.get("s3:ListBucket") == {""}, f"{role} reads but may not list: missing keys answer 403"
