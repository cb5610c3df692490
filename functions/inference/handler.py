"""AWS Lambda entry point: Mangum around the app, lifespan off (it would run per invocation)."""

from mangum import Mangum

from .app import app

handler = Mangum(app, lifespan="off")
