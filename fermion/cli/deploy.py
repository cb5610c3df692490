"""`fermion deploy compose|k8s|aws`: the platform on containers, a Kubernetes cluster, or an AWS account.

Each target first bootstraps the deployment's identity under its directory (infra/identity.py: the
registry's signing pair, NATS users, the first admin key, shown once) and keeps the secrets where the
target reads them. Like `up`, these commands act on this machine (docker, kubectl, aws), not over HTTP.
"""

from __future__ import annotations

import typer

from .deploy_aws import aws_app
from .deploy_compose import compose_app
from .deploy_k8s import k8s_app

deploy_app = typer.Typer(help="Deploy the platform: local containers, Kubernetes, or AWS.", no_args_is_help=True)
deploy_app.add_typer(compose_app, name="compose")
deploy_app.add_typer(k8s_app, name="k8s")
deploy_app.add_typer(aws_app, name="aws")
