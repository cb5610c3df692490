"""A sweep's Optuna study, rebuilt from its store record (model_store/sweeps.py) whenever a trainer takes it.

Optuna keeps the study in memory; the record is the truth. Finished trials go back in with
`study.add_trial`, trials that were running when the last holder stopped are asked again with
their recorded parameters (`enqueue_trial`), so a restart asks for no new trial it already had and
the sampler sees every result. Pruning is Optuna's median pruner on the epochs trials report.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from fermion.events import ParamSpec, Recipe, SweepRequest
from fermion.events.training import LOWER_IS_BETTER
from fermion.model_store import SweepRecord, TrialRecord

optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep logs its own lines
log = logging.getLogger("fermion.sweeps")

PRUNER_STARTUP_TRIALS = 2
"""Completed trials before any is pruned: a median of one trial prunes on noise."""
PRUNER_WARMUP_EPOCHS = 2
STATES = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}


def distribution(spec: ParamSpec) -> BaseDistribution:
    """The Optuna distribution a parameter spec names."""
    if spec.kind == "choice":
        return CategoricalDistribution(spec.choices)
    assert spec.low is not None and spec.high is not None  # ParamSpec's validator
    if spec.kind == "int":
        return IntDistribution(int(spec.low), int(spec.high))
    return FloatDistribution(spec.low, spec.high, log=spec.kind == "loguniform")


class Search:
    """The study behind one sweep: asks for trials, takes their epochs and ends, keeps the record in step."""

    def __init__(self, request: SweepRequest, record: SweepRecord) -> None:
        self.request, self.record = request, record
        self.space = {name: distribution(spec) for name, spec in request.space.items()}
        seed = int(hashlib.sha256(record.sweep_id.encode()).hexdigest()[:8], 16)
        self.study = optuna.create_study(
            direction="minimize" if request.metric in LOWER_IS_BETTER else "maximize",
            sampler=_sampler(request, seed),
            pruner=optuna.pruners.MedianPruner(
                n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS
            ),
        )
        self.live: dict[str, optuna.Trial] = {}
        for trial in record.trials:
            if trial.state == "running":
                self.study.enqueue_trial(trial.params, skip_if_exists=False)
                self.live[trial.job_id] = self.study.ask(self._distributions(trial))
                for epoch, value in sorted(trial.intermediate.items()):
                    self.live[trial.job_id].report(value, epoch)
            else:
                self.study.add_trial(
                    optuna.trial.create_trial(
                        params=trial.params,
                        distributions=self._distributions(trial),
                        value=trial.value if trial.state == "complete" else None,
                        intermediate_values=trial.intermediate,
                        state=STATES[trial.state],
                    )
                )

    def _distributions(self, trial: TrialRecord) -> dict[str, BaseDistribution]:
        return {k: self.space[k] for k in trial.params}

    @property
    def running(self) -> list[str]:
        """Job ids of the trials in flight."""
        return [t.job_id for t in self.record.trials if t.state == "running"]

    @property
    def asked(self) -> int:
        return len(self.record.trials)

    def ask(self, job_id: str) -> TrialRecord:
        """The next trial: its recipe and parameters, recorded as running (the caller stores the record)."""
        index = self.asked
        if self.request.search == "grid":
            recipe, params = self.request.trials[index], {}
            self.live[job_id] = self.study.ask()
        else:
            trial = self.study.ask(self.space)
            self.live[job_id] = trial
            params = dict(trial.params)
            recipe = Recipe.model_validate({**self.request.base.model_dump(), **params})
        record = TrialRecord(index=index, job_id=job_id, recipe=recipe.model_dump(mode="json"), params=params)
        self.record.trials.append(record)
        return record

    def report(self, job_id: str, epoch: int, metrics: dict[str, float]) -> bool:
        """Take one epoch of a trial; True when the median pruner says to stop it."""
        trial, rec = self.live.get(job_id), self.record.trial(job_id)
        value = metrics.get(self.request.metric)
        if trial is None or rec is None or rec.state != "running" or value is None or epoch in rec.intermediate:
            return False
        rec.intermediate[epoch] = value
        trial.report(value, epoch)
        return self.request.prune and trial.should_prune()

    def finish(self, job_id: str, state: str, value: float | None = None, reason: str | None = None) -> None:
        """Record a trial's end: complete with its metric, pruned or failed."""
        trial, rec = self.live.pop(job_id, None), self.record.trial(job_id)
        if trial is None or rec is None or rec.state != "running":
            return
        rec.state, rec.value, rec.reason = state, value, reason  # type: ignore[assignment]
        if state == "complete" and value is not None:
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=STATES[state])

    def best(self) -> TrialRecord | None:
        """The completed trial with the best metric (the highest; the lowest for an error metric such as mse;
        the earlier one on a tie), or None."""
        done = [t for t in self.record.trials if t.state == "complete" and t.value is not None]
        sign = -1.0 if self.request.metric in LOWER_IS_BETTER else 1.0
        return max(done, key=lambda t: (sign * (t.value or 0.0), -t.index)) if done else None


def _sampler(request: SweepRequest, seed: int) -> optuna.samplers.BaseSampler:
    if request.search == "tpe":
        # Optuna's default of 10 random start-up trials would make a short TPE search a random one.
        startup = max(2, min(10, request.n_trials // 3))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)


def trial_summary(trial: TrialRecord) -> dict[str, Any]:
    """What a sweep's log line says of a trial."""
    return {"job_id": trial.job_id, "state": trial.state, "value": trial.value, "params": trial.params}
