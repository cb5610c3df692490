"""Docker for the container tests: is an engine here, and the images built once per machine.

`./scripts/test` starts a Docker engine and sets FERMION_CONTAINERS=required, so in CI a missing
engine fails these tests; elsewhere (a helper's worktree, a laptop without Docker) they skip.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from fermion.infra import images


def require_docker() -> None:
    """Skip (or fail where the containers are required) when no Docker engine answers."""
    ok = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    if not ok:
        if os.environ.get("FERMION_CONTAINERS") == "required":
            pytest.fail("FERMION_CONTAINERS=required but no Docker engine answers (`docker info` fails)")
        pytest.skip("no Docker engine here (./scripts/test starts one)")


def image(name: str) -> str:
    """The tag of `name` built FROM the local base, built now if this machine lacks it."""
    require_docker()
    image_ = images.by_name(name)
    tag = images.tag_of(image_)
    if not images.has_image(tag):
        images.build(image_, base=images.local_base())
    return tag
