"""Background task entry points of the learning app (Django's task API).

A ``db_worker`` (``manage.py db_worker``) or an RQ worker runs these; a request never does.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

from django_tasks import task

from learning import runner, services
from learning.models import ModelVersion, TrainingRun


def _carry_out(run_id: int, work: Callable[[TrainingRun], ModelVersion | None]) -> str:
    """Sweep for runs lost by a dead worker, then claim the run, do ``work`` (which returns the
    version it registered, or None when cancelled) and record the outcome. Returns the final
    status. A run someone else claimed, or one cancelled while queued, is left alone."""
    # One indexed query when nothing is stale: a restarted worker re-queues (or, after
    # MAX_ATTEMPTS, fails) what its predecessor left running, without a separate scheduler.
    services.run_mark_stale(requeue=True)
    run = services.run_claim(run_id=run_id)
    if run is None:
        return "not claimed"
    try:
        version = work(run)
    except Exception:  # noqa: BLE001 - any failure must end the run as failed, with its trace
        services.run_finish(run=run, status=TrainingRun.Status.FAILED, log=traceback.format_exc())
        return TrainingRun.Status.FAILED
    if version is None:
        services.run_finish(
            run=run, status=TrainingRun.Status.CANCELLED, log="Cancelled on request."
        )
        return TrainingRun.Status.CANCELLED
    services.run_finish(
        run=run,
        status=TrainingRun.Status.SUCCEEDED,
        log=f"Registered {version.get_kind_display()} version {version.pk}.",
    )
    return TrainingRun.Status.SUCCEEDED


@task()
def train_reward_model_job(run_id: int) -> str:
    """Train a reward-model run (from its last checkpoint when it has one) and register its
    model version."""
    return _carry_out(run_id, runner.train_run)


@task()
def loop_iteration_job(run_id: int) -> str:
    """One loop iteration: reward model → policy → rollouts → pairs (``learning.loop``)."""
    from learning.loop import loop_iteration_run  # SB3 and Gymnasium load only for loop runs

    return _carry_out(run_id, loop_iteration_run)
