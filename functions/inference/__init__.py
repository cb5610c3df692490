"""The inference function: Open Inference Protocol v2 over ONNX Runtime."""

import os

PYDANTIC_PLUGINS = "PYDANTIC_DISABLE_PLUGINS"


def skip_pydantic_plugin_scan() -> None:
    """Spare the cold start pydantic's search for plugins, unless the environment already decides.

    The first model pydantic builds makes it read every installed distribution's entry points,
    looking for its plugins: ~10 ms of spawn → first answer in the development environment (183
    distributions; fewer in the images), and none of it is the bare app's (bench/cold_start.py).
    The function uses no pydantic plugin. Called by the entry point and the Lambda handler before
    they import a model; set PYDANTIC_DISABLE_PLUGINS yourself (empty: load every plugin) to choose.
    """
    os.environ.setdefault(PYDANTIC_PLUGINS, "__all__")
