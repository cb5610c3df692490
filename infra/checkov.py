"""checkov in its own virtual environment (like LocalStack): `python -m fermion.infra.checkov install`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .settings import ToolSettings

REQUIREMENTS = Path(__file__).with_name("checkov-requirements.txt")


def venv_dir() -> Path:
    """Where checkov's virtual environment lives (outside the repository)."""
    return ToolSettings().tools_dir / "checkov"


def executable() -> Path:
    """The checkov command."""
    return venv_dir() / "bin" / "checkov"


def installed() -> bool:
    """Whether the environment holds what REQUIREMENTS asks for."""
    marker = venv_dir() / ".fermion-installed"
    return executable().exists() and marker.exists() and marker.read_text() == REQUIREMENTS.read_text()


def install() -> Path:
    """Create the environment (once per requirements file)."""
    if installed():
        return venv_dir()
    venv = venv_dir()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    (venv / ".fermion-installed").write_text(REQUIREMENTS.read_text())
    return venv


if __name__ == "__main__" and sys.argv[1:] == ["install"]:
    print(f"checkov in {install()}")
