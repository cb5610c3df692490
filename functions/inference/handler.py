"""AWS Lambda entry point: Mangum around the app, lifespan off (it would run per invocation)."""

from mangum import Mangum

from .app import app, disable_batching

disable_batching()  # one request per invocation: nothing to merge
handler = Mangum(app, lifespan="off")
