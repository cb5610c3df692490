"""AWS Lambda entry point: Mangum around the app, lifespan off (it would run per invocation)."""

from fastapi import FastAPI
from mangum import Mangum

from .app import create_app


def make_handler(app: FastAPI | None = None) -> Mangum:
    """Mangum around `app` (default: the process's, batching off: one request per invocation)."""
    return Mangum(app or create_app(batching=False), lifespan="off")


handler = make_handler()
