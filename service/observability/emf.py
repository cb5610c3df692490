"""CloudWatch Embedded Metric Format: under Lambda, where nothing scrapes `/metrics`, each request's
figures go out as one JSON log line on stdout that CloudWatch turns into metrics.

https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import json
import sys
import time

NAMESPACE = "Fermion"


class Emf:
    """Writes EMF records for one function (its name is a dimension of every metric)."""

    def __init__(self, function: str, namespace: str = NAMESPACE) -> None:
        self.function = function
        self.namespace = namespace

    def emit(self, dimensions: dict[str, str], metrics: dict[str, tuple[float, str]]) -> None:
        """One record: `metrics` maps a name to (value, unit: Milliseconds, Count, Bytes...)."""
        dims = {"Function": self.function, **dimensions}
        record = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [list(dims)],
                        "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()],
                    }
                ],
            },
            **dims,
            **{name: value for name, (value, _) in metrics.items()},
        }
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
