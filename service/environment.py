"""Settings read from the environment without pydantic-settings: the inference function's cold start.

Every other unit reads its settings with pydantic-settings (`BaseSettings`, FERMION_ prefix).
With its own imports (dotenv, importlib.metadata, the cloud providers' sources) and the settings
classes built on it, it was ~40 ms of the inference function's spawn → first answer (316 → 276 ms
without it, bench/cold_start.py); the bare ASGI app that bench compares with pays none of it. So
the inference path declares its fields on plain pydantic models (`StoreConfig`, `BusConfig`,
`SecurityConfig`, `TelemetryConfig`) and reads them here, as pydantic-settings' environment source
does for our configuration:

- a field is set by `FERMION_<NAME>`, or by its `validation_alias` (each of `AliasChoices`, in order,
  without the prefix); names are matched case-insensitively;
- a list, set, tuple, dict or model field (or an optional one) takes JSON; a union that also
  admits a string takes the text as it is when it is not JSON;
- values given to the constructor win over the environment.

tests/unit/test_environment.py holds this to pydantic-settings itself (the same fields on a
`BaseSettings`), value by value, for every field of `InferenceSettings`.
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel, ConfigDict
from pydantic.fields import FieldInfo

PREFIX = "FERMION_"
M = TypeVar("M", bound=BaseModel)


class EnvSettings(BaseModel):
    """A model whose fields default from the environment (see the module's docstring)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**environment_values(type(self)), **values})


def from_environment(model: type[M]) -> M:
    """`model`'s fields read from the environment, for a model that is not an `EnvSettings`."""
    return model.model_validate(environment_values(model))


def environment_values(model: type[BaseModel]) -> dict[str, Any]:
    """The values the environment sets for `model`'s fields, keyed as validation expects them."""
    env = {name.lower(): value for name, value in os.environ.items()}
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        for variable, key in _variables(name, field):
            if (raw := env.get(variable.lower())) is None:
                continue
            if _takes_json(field.annotation):
                try:
                    values[key] = json.loads(raw)
                except ValueError as exc:
                    if not _admits_str(field.annotation):
                        raise ValueError(f"{variable}: {name} takes JSON, and {raw!r} is not JSON ({exc})") from None
                    values[key] = raw
            else:
                values[key] = raw
            break
    return values


def _variables(name: str, field: FieldInfo) -> list[tuple[str, str]]:
    """The variables that set a field, in order of preference, each with the key validation expects."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [(choice, choice) for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [(alias, alias)]
    return [(f"{PREFIX}{name.upper()}", name)]


def _admits_str(annotation: Any) -> bool:
    """Whether a value of this type may be a plain string."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _admits_str(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(_admits_str(arg) for arg in get_args(annotation))
    return annotation is str


def _takes_json(annotation: Any) -> bool:
    """Whether a field of this type is read as JSON (pydantic-settings calls such a field complex)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _takes_json(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(_takes_json(arg) for arg in get_args(annotation) if arg is not type(None))
    target = origin or annotation
    if not isinstance(target, type) or issubclass(target, (str, bytes)):
        return False
    return issubclass(target, (BaseModel, Mapping, Sequence, set, frozenset))
