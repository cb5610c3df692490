"""What every deployable unit shares: identity (`auth/`), metrics, logs and traces
(`observability/`), HTTP error answers (`responses.py`), the JetStream pull loop (`consumer.py`),
job status from the event log (`jobs.py`) and how a long-running unit stops (`lifecycle.py`).

Nothing here is deployed on its own, and nothing here imports a unit under `functions/`.
"""
