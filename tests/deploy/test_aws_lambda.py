"""serverless.yml as an AWS account would run it: /tmp sized for the model cache, no reserved concurrency
unless asked, S3 and Secrets Manager reachable from the VPC, the NATS password read at run time from a
secret only its role may read, and the 6 MB request limit worked around with presigned uploads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fermion.model_store import StoreSettings
from tests.deploy.test_serverless import PARAMS, SERVERLESS, package

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(not SERVERLESS.exists(), reason="needs `npm ci` (./scripts/setup runs it)"),
]
FUNCTIONS = ("InferenceLambdaFunction", "IngestLambdaFunction", "S3dropLambdaFunction")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return package(tmp_path_factory.mktemp("sls") / "package", PARAMS)


def test_inference_tmp_holds_the_model_cache_with_room_to_spare(template: dict[str, Any]) -> None:
    props = template["Resources"]["InferenceLambdaFunction"]["Properties"]
    cache = int(props["Environment"]["Variables"].get("FERMION_CACHE_MAX_BYTES", StoreSettings().cache_max_bytes))
    size_mb = props.get("EphemeralStorage", {}).get("Size", 512)  # Lambda's default /tmp
    assert size_mb * (1 << 20) >= cache + (512 << 20), f"/tmp of {size_mb} MB cannot hold a {cache}-byte cache"


def test_reserved_concurrency_is_unset_unless_asked(template: dict[str, Any], tmp_path: Path) -> None:
    for name in FUNCTIONS:
        assert "ReservedConcurrentExecutions" not in template["Resources"][name]["Properties"], name
    asked = package(tmp_path / "package", {**PARAMS, "concurrency": "5"})
    for name in FUNCTIONS:
        assert asked["Resources"][name]["Properties"]["ReservedConcurrentExecutions"] == 5, name


def test_the_vpc_functions_reach_s3_through_a_gateway_endpoint(template: dict[str, Any], tmp_path: Path) -> None:
    res = template["Resources"]
    [s3] = [r for r in res.values() if r["Type"] == "AWS::EC2::VPCEndpoint" and ".s3" in str(r["Properties"])]
    props = s3["Properties"]
    assert props["VpcEndpointType"] == "Gateway"
    assert props["RouteTableIds"] == {"Fn::Split": [",", "rtb-1,rtb-2"]}
    assert props["VpcId"] == "vpc-1"
    [secrets] = [r for r in res.values() if r["Type"] == "AWS::EC2::VPCEndpoint" and "secretsmanager" in str(r)]
    assert secrets["Properties"]["SubnetIds"] == {"Fn::Split": [",", "subnet-a,subnet-b"]}
    # Without route tables (the VPC routes S3 already) none is made: its condition is false.
    bare = package(tmp_path / "package", {k: v for k, v in PARAMS.items() if k != "routeTableIds"})
    condition = bare["Conditions"][s3["Condition"]]
    assert condition == {"Fn::Not": [{"Fn::Equals": ["", ""]}]}


def _statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [
        st for p in template["Resources"][role]["Properties"]["Policies"] for st in p["PolicyDocument"]["Statement"]
    ]


def test_the_nats_password_is_read_at_run_time_from_a_secret_only_its_role_reads(template: dict[str, Any]) -> None:
    res = template["Resources"]
    for name, role in (("IngestLambdaFunction", "IngestRole"), ("S3dropLambdaFunction", "DropRole")):
        env = res[name]["Properties"]["Environment"]["Variables"]
        assert not any("PASSWORD" in k and not k.endswith("_SECRET") for k in env), env
        assert not any("{{resolve:secretsmanager" in v and "nats" in v for v in env.values()), env
        assert (env["FERMION_NATS_USER"], env["FERMION_NATS_PASSWORD_SECRET"]) == ("ingest", "fermion/test/nats/ingest")
        [grant] = [st for st in _statements(template, role) if "secretsmanager:GetSecretValue" in st["Action"]]
        assert grant["Action"] == ["secretsmanager:GetSecretValue"]
        assert grant["Resource"]["Fn::Sub"].endswith(":secret:fermion/test/nats/ingest-??????")
    for st in _statements(template, "InferenceRole"):
        assert not any(a.startswith("secretsmanager:") for a in st["Action"])


def test_large_datasets_have_a_presigned_route_the_ingest_role_may_sign(template: dict[str, Any]) -> None:
    keys = {
        r["Properties"]["RouteKey"] for r in template["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert "POST /v1/datasets/{name}/upload-url" in keys
    puts = [st["Resource"] for st in _statements(template, "IngestRole") if st["Action"] == ["s3:PutObject"]]
    assert f"arn:aws:s3:::{PARAMS['bucket']}/incoming/*" in puts[0]
    text = (SERVERLESS.parents[2] / "serverless.yml").read_text()
    assert "6 MB" in text and "upload-url" in text  # the limit is documented where the functions are
