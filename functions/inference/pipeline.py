"""One inference request, whichever route it came by: authorize → body → route → model → run → count.

Every route that runs a model calls `Pipeline.serve`: the OIP v2 infer routes (`app.py`, the lean
core), and `:predict` on rows (`control.py`) or on pictures (`pictures.py`). A route brings only its
wire format: a `Wire` parses the body into a `Parsed`, which turns into the model's inputs once the
model is known (`feeds`) and encodes the answer (`encode`). The steps between, the per-version
telemetry and sampling (`routing.py`), and the counting of each answer and refusal in the inference
metrics happen here, once, so no route can skip one.

Nothing here imports the framework: the core answers infer with it before FastAPI is ever built.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from fermion.service.auth.state import SecurityState
from fermion.service.responses import HTTPError, translate

from .errors import TRANSLATIONS
from .runtime import LoadedModel, ModelRef
from .services import Services, model_for, read_body
from .settings import InferenceSettings
from .trim import Trimmer

if TYPE_CHECKING:
    from starlette.types import Receive

# What a request can be refused with: our errors, and the lower layers' that TRANSLATIONS maps.
REFUSALS: tuple[type[Exception], ...] = (HTTPError, *(row.theirs for row in TRANSLATIONS))


class Call(NamedTuple):
    """A request as its route found it: the path, the model it names, its headers and its body stream."""

    path: str
    """The raw path (an audit record of a refusal names it)."""
    name: str
    """NAME or NAME@ALIAS, from the path."""
    version: str | None
    """The version in the path, if any."""
    headers: Mapping[str, str]
    """Lower-case names (the first of a repeated header)."""
    receive: Receive


class Answer(NamedTuple):
    """An answer in its route's wire format: body, media type, headers."""

    content: bytes
    media_type: bytes
    headers: dict[str, str]

    @classmethod
    def json(cls, content: Any, headers: dict[str, str]) -> Answer:
        """`content` as JSON, the bytes Starlette's `JSONResponse` would send."""
        body = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
        return cls(body.encode(), b"application/json", headers)


class Parsed(Protocol):
    """A request body as its route's wire format parsed it."""

    variant: str | None
    """The model variant asked for (None: the runtime's choice)."""
    wanted: list[str] | None
    """The outputs asked for (None: all)."""
    request_id: str | None
    """The client's id of this request: a later label refers to its prediction (telemetry)."""

    async def feeds(self, model: LoadedModel) -> dict[str, np.ndarray]:
        """The model's inputs; a 400 when the body does not fit the model."""
        ...

    def encode(self, model: LoadedModel, results: dict[str, np.ndarray], headers: dict[str, str]) -> Answer:
        """The answer, carrying `headers` (which version answered) and any of the wire format's own."""
        ...


Wire = Callable[[bytes, Mapping[str, str], InferenceSettings], Parsed]
"""A route's wire format: (body, headers, settings) → the parsed request; a 400 when it is malformed."""


class Pipeline:
    """The steps of every inference request, over the app's services and its security."""

    def __init__(self, services: Services, security: SecurityState) -> None:
        self.services = services
        self.security = security
        self._trimmer = Trimmer()

    async def serve(self, call: Call, wire: Wire) -> Answer:
        """Run one request; its answer or refusal counted once (`Disconnected`: the client left)."""
        services, headers = self.services, call.headers
        started = time.perf_counter()
        try:
            caller = await self.security.authorize(headers.get("authorization"), "infer", f"POST {call.path}")
            settings = services.settings()
            body = await read_body(call.receive, headers.get("content-length"), settings.max_body_bytes)
            ref = ModelRef.parse(call.name, call.version)
            parsed = wire(body, headers, settings)
            route = await services.traffic.route(ref, headers, caller.tenant)  # which version answers
            with route.observed():
                model = await model_for(services, caller, route.ref, parsed.variant)
                feeds = await parsed.feeds(model)
                results = await services.scheduler.run(model, feeds, parsed.wanted)
            answer = parsed.encode(model, results, route.answered(model, feeds, results, parsed.request_id))
        except REFUSALS as exc:
            if services.metrics is not None:
                ours = exc if isinstance(exc, HTTPError) else translate(exc, TRANSLATIONS)
                services.metrics.refused_request(type(exc).__name__, ours.status)
            raise
        if services.metrics is not None:
            # The alias asked for: NAME@ALIAS's, a bare name's default, none for an explicit version.
            alias = ref.alias or ("" if ref.version is not None else settings.default_alias)
            services.metrics.answered(model.name, model.version, alias, started)
        self._trimmer.after(len(body) + len(answer.content))  # a large request: trim after it
        return answer
