"""AWS Lambda entry point: Mangum around the app, lifespan off."""

from mangum import Mangum

from .app import app

handler = Mangum(app, lifespan="off")
