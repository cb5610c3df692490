"""The inference function's plain environment read gives what pydantic-settings would, field by field.

`fermion.service.environment` replaces pydantic-settings on the inference path only (with it, a cold
start was ~40 ms longer). Each case sets an environment, then reads `InferenceSettings` both ways: with
our reader, and with pydantic-settings itself (`Reference`: the same fields on a `BaseSettings`, with
its configuration). The values must be equal, and a value one refuses the other refuses too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from fermion.functions.inference.settings import InferenceSettings
from fermion.service.environment import EnvSettings, environment_values

CASES: dict[str, dict[str, str]] = {
    "nothing set": {},
    "scalars of every kind": {
        "FERMION_HOME": "/srv/fermion",
        "FERMION_TENANT": "acme",
        "FERMION_REQUIRE_GPU": "true",
        "FERMION_VERIFY_SIGNATURES": "0",
        "FERMION_ALIAS_TTL_S": "0.5",
        "FERMION_MAX_BATCH_SIZE": "8",
        "FERMION_VARIANT": "int8",
        "FERMION_S3_SSE": "aws:kms",
        "FERMION_NATS_URL": "nats://a:4222,nats://b:4222",
        "FERMION_NATS_PASSWORD": "s3cret",
        "FERMION_AUTH": "off",
        "FERMION_METRICS": "no",
        "FERMION_PRELOAD": "digits@production",
    },
    "JSON for lists and dicts": {
        "FERMION_PROVIDERS": '["CUDAExecutionProvider", "CPUExecutionProvider"]',
        "FERMION_TRUSTED_KEYS": '["a2V5"]',
        "FERMION_BATCH_OVERRIDES": '{"digits": {"max_batch_size": 4, "max_delay_ms": 1.5}}',
    },
    "JSON null for an optional list": {"FERMION_PROVIDERS": "null", "FERMION_TRT_CACHE_DIR": "/trt"},
    "names in any case": {"fermion_home": "/lower", "Fermion_Tenant": "mixed", "FERMION_CACHE_DIR": "/cache"},
    "other tools' own variables": {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_SERVICE_NAME": "inference-eu",
        "AWS_LAMBDA_FUNCTION_NAME": "fermion-infer",
        "PROMETHEUS_MULTIPROC_DIR": "/tmp/prom",
    },
    "the first of several alias choices wins": {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "FERMION_MULTIPROC_DIR": "/tmp/ours",
        "PROMETHEUS_MULTIPROC_DIR": "/tmp/theirs",
    },
    "an empty value": {"FERMION_PRELOAD": "", "FERMION_STORE_URL": ""},
}

REFUSED: dict[str, dict[str, str]] = {
    "a list that is not JSON": {"FERMION_PROVIDERS": "CPUExecutionProvider"},
    "a number out of range": {"FERMION_MAX_BATCH_SIZE": "0"},
    "a choice not offered": {"FERMION_VARIANT": "fp8"},
    "not a boolean": {"FERMION_REQUIRE_GPU": "perhaps"},
}


class Environment:
    """The test's environment: nothing inherited from the test run, home under tmp_path."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, home: str) -> None:
        self.monkeypatch = monkeypatch
        self.clear()
        monkeypatch.setenv("FERMION_HOME", home)

    def __call__(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)

    def clear(self) -> None:
        for name in list(os.environ):
            if name.upper().startswith(("FERMION_", "OTEL_", "AWS_LAMBDA_", "PROMETHEUS_")):
                self.monkeypatch.delenv(name)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Environment:
    return Environment(monkeypatch, str(tmp_path))


class Reference(InferenceSettings, BaseSettings):  # type: ignore[misc]
    """InferenceSettings' fields, read by pydantic-settings as every other unit reads its settings."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")

    def __init__(self, **values: Any) -> None:
        BaseSettings.__init__(self, **values)  # pydantic-settings alone reads the environment


def pydantic_settings_read() -> dict[str, Any]:
    """The values pydantic-settings reads for InferenceSettings' fields."""
    return Reference().model_dump()


@pytest.mark.parametrize("case", CASES)
def test_reads_what_pydantic_settings_reads(environment: Environment, tmp_path, case: str) -> None:
    environment(CASES[case])
    ours = InferenceSettings()
    assert ours.model_dump() == pydantic_settings_read()
    if CASES[case]:  # and the case did change something: no vacuous equality of two sets of defaults
        environment.clear()
        assert ours != InferenceSettings(home=tmp_path)


@pytest.mark.parametrize("case", REFUSED)
def test_refuses_what_pydantic_settings_refuses(environment: Environment, case: str) -> None:
    environment(REFUSED[case])
    with pytest.raises((ValidationError, ValueError)) as ours:
        InferenceSettings()
    with pytest.raises((ValidationError, SettingsError)):
        pydantic_settings_read()
    variable = next(iter(REFUSED[case])).removeprefix("FERMION_").lower()
    assert variable in str(ours.value).lower()  # the message names the setting


def test_arguments_win_over_the_environment(environment: Environment) -> None:
    environment({"FERMION_TENANT": "from-env", "FERMION_MAX_BATCH_SIZE": "8"})
    settings = InferenceSettings(tenant="given")
    assert (settings.tenant, settings.max_batch_size) == ("given", 8)


def test_every_field_is_read(environment: Environment) -> None:
    """No field is missed: each has a variable our reader finds, the same one pydantic-settings reads."""
    for name, field in InferenceSettings.model_fields.items():
        if field.validation_alias is None:
            environment({f"FERMION_{name.upper()}": "1"})  # read, not validated: any JSON will do
    values = environment_values(InferenceSettings)
    plain = [n for n, f in InferenceSettings.model_fields.items() if f.validation_alias is None]
    assert set(plain) <= set(values)


def test_the_inference_path_imports_neither_pydantic_settings_nor_its_sources(tmp_path) -> None:
    """Importing the app and building it, as a cold start does, leaves pydantic-settings unimported."""
    code = (
        "import sys; from fermion.functions.inference.app import create_app; create_app(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic_settings', 'dotenv')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"FERMION_HOME": str(tmp_path)}
    )
    assert out.stdout.strip() == "[]"


class _Union(EnvSettings):
    value: list[str] | str = "unset"


class _UnionReference(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")
    value: list[str] | str = "unset"


@pytest.mark.parametrize("raw", ["plain text", '["a", "b"]'])
def test_a_union_with_a_string_takes_text_that_is_not_json(environment: Environment, raw: str) -> None:
    environment({"FERMION_VALUE": raw})
    assert _Union().value == _UnionReference().value
