"""serverless.yml: renders to CloudFormation offline, routes every app route to the right function,
grants each function only what its code does, and serves a real OIP v2 request through
serverless-offline -> Mangum -> ONNX Runtime."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from fermion.model_store import LocalDirStore, Registry, Signer, generate_key_pair
from tests.helpers import api_key, bearer, free_port, linear_draft, linear_onnx

REPO = Path(__file__).resolve().parents[2]
SERVERLESS = REPO / "node_modules" / ".bin" / "serverless"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fermion@sha256:" + "0" * 64
BUCKET = "fermion-test-models"
pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(not SERVERLESS.exists(), reason="needs `npm ci` (./scripts/setup runs it)"),
]


def _env() -> dict[str, str]:
    # No credentials and no telemetry: any AWS call would fail rather than reach out.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"SLS_TELEMETRY_DISABLED": "1", "SLS_NOTIFICATIONS_MODE": "off", "AWS_EC2_METADATA_DISABLED": "true"}
    return env


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The CloudFormation that `serverless package` renders, images by URI, without AWS or Docker."""
    out = tmp_path_factory.mktemp("sls") / "package"
    return package(out, PARAMS)


PARAMS = {
    "imageUri": IMAGE,
    "subnetIds": "subnet-a,subnet-b",
    "securityGroupIds": "sg-1",
    "bucket": BUCKET,
    "vpcId": "vpc-1",
    "routeTableIds": "rtb-1,rtb-2",
}


def package(out: Path, params: dict[str, str]) -> dict[str, Any]:
    """`serverless package` with `params`, offline: the CloudFormation it renders."""
    cmd = [str(SERVERLESS), "package", "--stage", "test", "--region", "us-east-1", "--package", str(out)]
    cmd += [f"--param={k}={v}" for k, v in params.items()]
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return dict(json.loads((out / "cloudformation-template-update-stack.json").read_text()))


def _app_routes() -> dict[str, set[tuple[str, str]]]:
    """(method, path) of every route the two HTTP apps serve, from their OpenAPI and route tables."""
    from fermion.functions.inference.app import create_app
    from fermion.functions.ingest.app import app as ingest_app

    out: dict[str, set[tuple[str, str]]] = {}
    for name, app in (("inference", create_app(batching=False)), ("ingest", ingest_app)):
        routes = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
        for r in app.routes:  # plain Starlette routes (the infer routes) are not in OpenAPI
            path, methods = getattr(r, "path", ""), getattr(r, "methods", None) or set()
            if (path.startswith("/v") and not path.startswith("/v1/models")) or path.endswith("/infer"):
                routes |= {(m, path) for m in methods if m != "HEAD"}
        out[name] = routes
    return out


def _gateway_routes(template: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(method, route path) -> the function an API Gateway route integrates."""
    resources = template["Resources"]
    out = {}
    for res in resources.values():
        if res["Type"] != "AWS::ApiGatewayV2::Route":
            continue
        method, path = res["Properties"]["RouteKey"].split(" ", 1)
        integration = res["Properties"]["Target"]["Fn::Join"][1][1]["Ref"]
        out[(method, path)] = integration.removeprefix("HttpApiIntegration").lower()
    return out


def _segment_rank(route: str, path: str) -> tuple[int, ...] | None:
    """How an HTTP API route matches a concrete path (None: no match); a higher rank wins."""
    r, p = route.strip("/").split("/"), path.strip("/").split("/")
    rank = []
    for i, seg in enumerate(r):
        if seg.endswith("+}"):
            return (*rank, 0) if len(p) > i else None
        if i >= len(p):
            return None
        if seg.startswith("{"):
            rank.append(1)
        elif seg == p[i]:
            rank.append(2)
        else:
            return None
    return tuple(rank) if len(p) == len(r) else None


def _route_for(gateway: dict[tuple[str, str], str], method: str, path: str) -> str | None:
    concrete = re.sub(r"\{[^}]+\}", "x", path)  # {name}:predict -> x:predict
    ranked = [
        (rank, fn) for (m, route), fn in gateway.items() if m == method and (rank := _segment_rank(route, concrete))
    ]
    return max(ranked)[1] if ranked else None


def test_every_app_route_reaches_its_function(template: dict[str, Any]) -> None:
    gateway = _gateway_routes(template)
    for function, routes in _app_routes().items():
        assert routes, function
        for method, path in sorted(routes):
            assert _route_for(gateway, method, path) == function, f"{method} {path} should reach {function}"
    # And no gateway route leads nowhere.
    all_routes = {r for rs in _app_routes().values() for r in rs}
    for method, route in gateway:
        assert any(_segment_rank(route, re.sub(r"\{[^}]+\}", "x", p)) for m, p in all_routes if m == method), route


def test_s3_drop_is_triggered_by_incoming_and_reaches_nats_in_the_vpc(template: dict[str, Any]) -> None:
    res = template["Resources"]
    bucket = res["S3BucketModels"]["Properties"]
    [notification] = bucket["NotificationConfiguration"]["LambdaConfigurations"]
    assert notification["Event"] == "s3:ObjectCreated:*"
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/"}]
    assert notification["Function"]["Fn::GetAtt"][0] == "S3dropLambdaFunction"
    assert bucket["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    for name in ("IngestLambdaFunction", "S3dropLambdaFunction"):
        props = res[name]["Properties"]
        assert props["VpcConfig"]["SubnetIds"] == {"Fn::Split": [",", "subnet-a,subnet-b"]}
        assert props["Environment"]["Variables"]["FERMION_NATS_URL"] == "nats://nats.fermion-test.local:4222"
    assert "VpcConfig" not in res["InferenceLambdaFunction"]["Properties"]  # inference never talks to NATS
    for name in ("InferenceLambdaFunction", "IngestLambdaFunction", "S3dropLambdaFunction"):
        props = res[name]["Properties"]
        assert props["Code"] == {"ImageUri": IMAGE}
        assert props["Environment"]["Variables"]["FERMION_TRUSTED_KEYS"].startswith("{{resolve:secretsmanager:")


# What each function's code does to the object store (model_store/backends/s3.py calls get_object,
# head_object, put_object, list_objects_v2 and delete_object), as IAM actions on key prefixes.
NEEDED = {
    "InferenceRole": {"s3:GetObject": {"models/*", "keys/*"}, "s3:ListBucket": {""}},
    "IngestRole": {
        "s3:GetObject": {
            *("datasets/*", "models/*", "keys/*", "usage/*", "runs/*", "sweeps/*", "scores/*"),
            *("pipelines/*", "federated/*"),
        },
        "s3:PutObject": {
            "incoming/*",
            "datasets/*",
            "models/*/aliases/*",
            "models/*/versions/*",
            "pipelines/*",
            "keys/*",
            "usage/*",
            "_fermion/conformance/*",
        },
        "s3:DeleteObject": {"models/*/aliases/*", "pipelines/*", "_fermion/conformance/*"},
        "s3:ListBucket": {""},
    },
    "DropRole": {
        "s3:GetObject": {"incoming/*", "datasets/*"},
        "s3:PutObject": {"datasets/*", "_fermion/conformance/*"},
        "s3:DeleteObject": {"_fermion/conformance/*"},
        "s3:ListBucket": {""},
    },
}
ANYWHERE = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_each_function_has_its_own_role_with_only_what_it_uses(template: dict[str, Any]) -> None:
    res = template["Resources"]
    roles = {
        fn: res[f"{fn}LambdaFunction"]["Properties"]["Role"]["Fn::GetAtt"][0]
        for fn in ("Inference", "Ingest", "S3drop")
    }
    assert len(set(roles.values())) == 3, roles
    for role, needed in NEEDED.items():
        granted: dict[str, set[str]] = {}
        for policy in res[role]["Properties"]["Policies"]:
            for st in policy["PolicyDocument"]["Statement"]:
                assert st["Effect"] == "Allow"
                resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                for action in st["Action"]:
                    assert "*" not in action, f"{role} grants a wildcard action {action}"
                    if action in ANYWHERE or action.startswith("secretsmanager:"):  # test_aws_secrets_in_lambda.py
                        continue
                    for arn in resources:
                        assert isinstance(arn, str) and arn.startswith(f"arn:aws:s3:::{BUCKET}"), (role, arn)
                        granted.setdefault(action, set()).add(arn.removeprefix(f"arn:aws:s3:::{BUCKET}").lstrip("/"))
                    if action == "s3:ListBucket":
                        # Unconditional: a GetObject of a missing key answers 404 only to a role that may
                        # list the bucket (the s3:prefix key is absent from a GetObject's context), else
                        # 403, which the store reports as "unavailable".
                        assert "Condition" not in st, f"{role}: a conditional ListBucket turns a missing key into a 403"
        assert granted == needed, f"{role}: granted {granted}, needs {needed}"
    managed = res["InferenceRole"]["Properties"].get("ManagedPolicyArns", [])
    assert not managed, "inference needs no VPC access"
    assert not any(a.startswith("s3:Put") for a in NEEDED["InferenceRole"]), "inference reads only"


# --- end to end through serverless-offline ------------------------------------------------------


def _offline_config(dest: Path, port: int, lambda_port: int) -> None:
    """serverless.yml's inference function as a handler (serverless-offline runs no images)."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    real = yaml.load((REPO / "serverless.yml").read_text(), Loader=Loader)
    inference = real["functions"]["inference"]
    handler = inference["image"]["command"][0].replace(".", "/").rsplit("/", 1)
    config = {
        "service": "fermion-offline",
        "frameworkVersion": "3",
        "plugins": ["serverless-offline"],
        "provider": {"name": "aws", "runtime": "python3.11", "stage": "local", "region": "us-east-1"},
        "functions": {"inference": {"handler": ".".join(handler), "events": inference["events"], "timeout": 60}},
        "custom": {"serverless-offline": {"host": "127.0.0.1", "httpPort": port, "lambdaPort": lambda_port}},
    }
    (dest / "serverless.yml").write_text(yaml.safe_dump(config))
    (dest / "node_modules").symlink_to(REPO / "node_modules")


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[tuple[str, str]]:
    home = tmp_path / "home"
    private, _ = generate_key_pair(home / "keys")  # the function trusts HOME/keys/*.pub
    registry = Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache", signer=Signer.from_file(private))
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=3)}, linear_draft())
    key = api_key(registry, "infer")
    service = tmp_path / "service"
    service.mkdir()
    port, lambda_port = free_port(), free_port()
    _offline_config(service, port, lambda_port)
    env = _env() | {
        "VIRTUAL_ENV": str(REPO / ".venv"),
        "FERMION_STORE_URL": (tmp_path / "store").as_uri(),
        "FERMION_HOME": str(home),
        "FERMION_PROVIDERS": '["CPUExecutionProvider"]',
        "PYTHONPATH": str(REPO),
    }
    log = (tmp_path / "offline.log").open("wb")
    proc = subprocess.Popen([str(SERVERLESS), "offline", "start"], cwd=service, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "offline.log").read_text()[-3000:]
            try:
                httpx.get(f"{url}/v2/health/live", timeout=30)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("serverless-offline did not answer: " + (tmp_path / "offline.log").read_text()[-3000:])
        yield url, key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_oip_v2_infer_through_serverless_offline_mangum_and_onnxruntime(offline: tuple[str, str]) -> None:
    offline, key = offline  # type: ignore[assignment]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    body = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": x.ravel().tolist()}]}
    assert httpx.post(f"{offline}/v2/models/lin/infer", json=body, timeout=60).status_code == 401
    headers = bearer(key)
    r = httpx.post(f"{offline}/v2/models/lin/infer", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_name"] == "lin"
    [logits] = out["outputs"]
    assert logits["shape"] == [2, 3]
    import onnxruntime as ort

    session = ort.InferenceSession(linear_onnx(seed=3), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(np.array(logits["data"], dtype=np.float32).reshape(2, 3), expected, rtol=1e-5)
    # The predict route goes through the greedy /v1/models/{proxy+} route to the same function.
    p = httpx.post(f"{offline}/v1/models/lin:predict", json={"instances": x.tolist()}, headers=headers, timeout=60)
    assert p.status_code == 200, p.text
    # Bad input is a 4xx with a reason through the whole chain, never a 500.
    bad = httpx.post(f"{offline}/v2/models/lin/infer", json={"inputs": []}, headers=headers, timeout=60)
    assert 400 <= bad.status_code < 500, bad.text
    assert shutil.which("node")
