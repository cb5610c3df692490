"""A monitor task that dies says so at once; the backlog reads, dying, leave no figure behind
(functions/monitor/service.py: `_ended`, `_backlog_reads`)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from fermion.events import ConsumerState
from fermion.functions.monitor.service import _backlog_reads, _ended
from fermion.service.observability.monitor import MonitorMetrics


async def test_dead_backlog_reads_are_reported_unreadable(caplog: pytest.LogCaptureFixture) -> None:
    metrics = MonitorMetrics(CollectorRegistry())
    metrics.backlog("trainers", ConsumerState(pending=3, unacked=1))
    metrics.backlog_read(True)

    async def state(durable: str, stream: str) -> ConsumerState:
        raise RuntimeError("a bug in the loop")  # not the bus refusing (BusError): the loop dies

    task = _backlog_reads(state, metrics, asyncio.Event())
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError):
        await task
    await asyncio.sleep(0)  # the done callbacks run on the next turn of the loop
    sample = metrics.registry.get_sample_value
    assert sample("fermion_monitor_trainer_backlog_up") == 0
    assert sample("fermion_monitor_trainer_backlog_messages", {"consumer": "trainers"}) is None
    assert "the trainers' backlog reads failed and is not running any more" in caplog.text


async def test_a_task_cancelled_at_the_stop_is_no_failure(caplog: pytest.LogCaptureFixture) -> None:
    called: list[bool] = []
    task = asyncio.create_task(asyncio.sleep(60), name="the rollout ticks")
    task.add_done_callback(lambda done: _ended(done, lambda: called.append(True)))
    await asyncio.sleep(0)
    task.cancel()
    with caplog.at_level(logging.ERROR), pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert not called and "failed" not in caplog.text
