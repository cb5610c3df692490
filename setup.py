"""Package discovery for the `package-dir` roots in pyproject.toml (everything else lives there).

setuptools' own `find` cannot give each root its `fermion.` prefix, so this lists, for every root,
the root and each folder below it with an `__init__.py`. Folders without one (the console's static
files, the edge runner shipped as source) are package data, declared in pyproject.toml.
"""

import tomllib
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
roots = tomllib.loads((HERE / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
packages = [
    name
    for root, folder in roots.items()
    for name in [root, *(f"{root}.{sub}" for sub in find_packages(str(HERE / folder)))]
]
setup(packages=packages)
