"""The trainers' backlog as a CloudWatch metric, so that ECS scales them (infra/aws/ecs.yml).

`python -m fermion.infra.jetstream_lag --monitor-url http://127.0.0.1:8222 --namespace Fermion/prod`
runs beside nats-server (a sidecar in its task: the monitoring port never leaves the task) and every
`--every-s` seconds puts `Backlog` = messages waiting plus messages delivered but not yet acknowledged,
summed over every durable consumer the trainers serve (`streams.TRAINER_CONSUMERS`: trainings, sweeps,
scorings, pipelines, retrains). Scaling on all of them matters: a sweep or a pipeline waits forever at
zero trainers if only trainings count.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import botocore.exceptions
import httpx

from fermion.events import streams

log = logging.getLogger("fermion.jetstream_lag")

TRAINER_CONSUMERS = set(streams.TRAINER_CONSUMERS)


def backlog(jsz: dict[str, Any]) -> dict[str, int]:
    """`stream/durable` → waiting + unacknowledged messages, from nats-server's `/jsz?consumers=true`."""
    out: dict[str, int] = {}
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            for consumer in stream.get("consumer_detail") or []:
                if (stream.get("name"), consumer.get("name")) in TRAINER_CONSUMERS:
                    waiting = int(consumer.get("num_pending", 0)) + int(consumer.get("num_ack_pending", 0))
                    out[f"{stream['name']}/{consumer['name']}"] = waiting
    return out


def read_backlog(monitor_url: str) -> dict[str, int]:
    """The backlog per trainer consumer, read from the server's monitoring endpoint."""
    reply = httpx.get(f"{monitor_url.rstrip('/')}/jsz", params={"accounts": "true", "consumers": "true"}, timeout=5)
    reply.raise_for_status()
    return backlog(reply.json())


def publish(namespace: str, counts: dict[str, int]) -> None:
    """Put the total (and each consumer's count) into CloudWatch."""
    import boto3  # only the sidecar needs it

    total = {"MetricName": "Backlog", "Value": float(sum(counts.values())), "Unit": "Count"}
    each = [
        {
            "MetricName": "Backlog",
            "Dimensions": [{"Name": "Consumer", "Value": name}],
            "Value": float(n),
            "Unit": "Count",
        }
        for name, n in sorted(counts.items())
    ]
    boto3.client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=[total, *each])


def main() -> None:
    """Entry point: publish the backlog every `--every-s` seconds until stopped."""
    parser = argparse.ArgumentParser(description="Publish the trainers' JetStream backlog to CloudWatch")
    parser.add_argument("--monitor-url", default="http://127.0.0.1:8222")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--every-s", type=float, default=30.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    while True:
        try:
            publish(args.namespace, read_backlog(args.monitor_url))
        except (httpx.HTTPError, ValueError) as exc:  # the server restarting: the next round tries again
            log.warning("backlog not read: %s", exc)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            log.warning("backlog not published: %s", exc)
        time.sleep(args.every_s)


if __name__ == "__main__":
    main()
