"""Background task entry points of the learning app (Django's task API).

A ``db_worker`` (``manage.py db_worker``) or an RQ worker runs these; a request never does.
"""

from __future__ import annotations

import traceback

from django_tasks import task

from learning import runner, services
from learning.models import TrainingRun


@task()
def train_reward_model_job(run_id: int) -> str:
    """Sweep for runs lost by a dead worker, then claim the run, train it (from its last
    checkpoint when it has one), register its model version. Returns the final status.

    A run someone else claimed, or one cancelled while queued, is left alone.
    """
    # One indexed query when nothing is stale: a restarted worker re-queues (or, after
    # MAX_ATTEMPTS, fails) what its predecessor left running, without a separate scheduler.
    services.run_mark_stale(requeue=True)
    run = services.run_claim(run_id=run_id)
    if run is None:
        return "not claimed"
    try:
        version = runner.train_run(run)
    except Exception:  # noqa: BLE001 - any failure must end the run as failed, with its trace
        services.run_finish(run=run, status=TrainingRun.Status.FAILED, log=traceback.format_exc())
        return TrainingRun.Status.FAILED
    if version is None:
        services.run_finish(
            run=run, status=TrainingRun.Status.CANCELLED, log="Cancelled on request."
        )
        return TrainingRun.Status.CANCELLED
    services.run_finish(
        run=run, status=TrainingRun.Status.SUCCEEDED, log=f"Registered model version {version.pk}."
    )
    return TrainingRun.Status.SUCCEEDED
