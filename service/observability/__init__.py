"""Operating the functions: Prometheus metrics, JSON logs, access logs.

Shared by the three functions the way `service/auth` is: each function builds its own
metrics object (`inference.py`, `ingest.py`, `trainer.py`) on its own `CollectorRegistry`, so
several apps in one process (tests) never collide. `exposition.py` answers `/metrics`.
"""
