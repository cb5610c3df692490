"""AWS Lambda entry point: Mangum around the app, lifespan off (it would run per invocation).

Lambda's init phase is this module's import, so, as the container entry point does, the imports
run with the cyclic garbage collector off and what they made is frozen out of later collections,
and pydantic does not search the installed distributions for plugins (`skip_pydantic_plugin_scan`).
The framework (FastAPI) is not among them: the app serves the infer routes itself (`app.py`).
"""

import gc

from . import skip_pydantic_plugin_scan

gc.disable()
skip_pydantic_plugin_scan()

from mangum import Mangum  # noqa: E402
from mangum.types import ASGI  # noqa: E402

from .app import create_app  # noqa: E402


def make_handler(app: ASGI | None = None) -> Mangum:
    """Mangum around `app` (default: the process's, batching off: one request per invocation)."""
    return Mangum(app or create_app(batching=False), lifespan="off")


handler = make_handler()
gc.freeze()
gc.enable()
