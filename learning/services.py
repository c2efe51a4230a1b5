"""Writes for the learning app: enqueue, cancel and sweep training runs; promote models."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from feedback.models import Campaign
from learning import broadcast, selectors
from learning.models import ModelKind, ModelVersion, RetrainRule, RunKind, TrainingRun
from learning.runner import RunConfig

if TYPE_CHECKING:
    from learning.loop import LoopRunConfig

STALE_AFTER_S = 300.0
"""A running run whose heartbeat is older than this lost its worker. Heartbeats come with the
trainer's reports (every epoch, or every ``report_every_steps``), so this must exceed the
longest gap between them."""

MAX_ATTEMPTS = 3
"""A run whose worker died this many times is failed rather than re-queued again (a run that
kills its worker, say by running out of memory, must not loop forever)."""


class RunNotCancellable(ValueError):
    """The run already finished."""


def _status_announce(run_id: int) -> None:
    """Push the run's new state to its page once the status change is committed (at once in
    autocommit): the page learns that a run started, finished, failed or was cancelled from
    the socket, without re-reading the run."""
    transaction.on_commit(lambda: broadcast.run_event_send(run_id=run_id, event="status"))


def _job_for(kind: str) -> Any:
    """The task that carries out a run of ``kind``."""
    from learning.jobs import loop_iteration_job, train_reward_model_job  # jobs import the runner

    return loop_iteration_job if kind == RunKind.LOOP else train_reward_model_job


def run_enqueue(
    *,
    campaign: Campaign,
    config: RunConfig | LoopRunConfig,
    triggered_by: Any | None,
    kind: str = RunKind.REWARD_MODEL,
) -> TrainingRun:
    """Create a queued run with a frozen config and the ids of the judgements it will use, and
    hand it to the task queue once the row is committed (a worker must be able to see it).
    ``kind`` is ``reward_model`` (config: ``RunConfig``) or ``loop`` (``LoopRunConfig``)."""
    expected: type = RunConfig
    if kind == RunKind.LOOP:
        from learning.loop import LoopRunConfig  # loads SB3: only for loop runs

        expected = LoopRunConfig
    if not isinstance(config, expected):
        raise TypeError(f"A {kind} run takes a {expected.__name__}, got {type(config).__name__}.")
    job = _job_for(kind)

    judgement_ids = list(
        selectors.judgements_for_training(campaign=campaign).values_list("id", flat=True)
    )
    with transaction.atomic():
        run = TrainingRun.objects.create(
            kind=kind,
            campaign=campaign,
            config=config.to_dict(),
            dataset={"judgement_ids": judgement_ids, "num_judgements": len(judgement_ids)},
            triggered_by=triggered_by,
        )
        transaction.on_commit(lambda: job.enqueue(run.pk))
    return run


def run_claim(*, run_id: int) -> TrainingRun | None:
    """Move a queued run to running with one conditional UPDATE; None when another worker got
    it first or it is no longer queued (healthchecks' ``sendalerts`` claim pattern)."""
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started_at=now, heartbeat_at=now, progress=0.0
    )
    if not claimed:
        return None
    run = TrainingRun.objects.select_related("campaign").get(pk=run_id)
    run.attempts += 1
    run.save(update_fields=["attempts"])
    _status_announce(run.pk)
    return run


def run_finish(*, run: TrainingRun, status: str, log: str = "") -> None:
    """Close a running run; only a run still ``running`` as the attempt ``run`` was claimed for
    is changed (a sweep may have failed it, or re-queued it for another worker to claim)."""
    fields: dict[str, Any] = {"status": status, "finished_at": timezone.now()}
    if status == TrainingRun.Status.SUCCEEDED:
        fields["progress"] = 1.0
    if log:
        fields["log"] = (run.log + "\n" + log).strip()
    if TrainingRun.objects.filter(
        pk=run.pk, status=TrainingRun.Status.RUNNING, attempts=run.attempts
    ).update(**fields):
        _status_announce(run.pk)


def run_cancel(*, run: TrainingRun) -> TrainingRun:
    """A queued run is cancelled at once; a running one is asked to stop, and its worker stops
    at the next report (``RunReporter``). Finished runs raise ``RunNotCancellable``."""
    now = timezone.now()
    if TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.CANCELLED, cancel_requested=True, finished_at=now
    ):
        pass
    elif not TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
        cancel_requested=True
    ):
        run.refresh_from_db()
        raise RunNotCancellable(
            f"Run {run.pk} is already {run.status}; only queued or running runs can be cancelled."
        )
    _status_announce(run.pk)
    run.refresh_from_db()
    return run


def run_mark_stale(
    *,
    stale_after_s: float = STALE_AFTER_S,
    requeue: bool = False,
    max_attempts: int = MAX_ATTEMPTS,
    now: Any = None,
) -> list[int]:
    """Runs still ``running`` whose heartbeat is older than ``stale_after_s`` lost their worker
    (killed, OOM, machine gone). Each becomes ``failed`` with a note in its log, or with
    ``requeue`` goes back to ``queued`` and is enqueued again (it resumes from its checkpoint),
    unless it has already had ``max_attempts`` attempts. Returns the ids touched.

    Each row changes with a conditional UPDATE, so a worker that wakes up and heartbeats at the
    same moment is not overwritten: its later ``run_finish`` finds the run no longer running.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=stale_after_s)
    lapsed = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    touched: list[int] = []
    for run in TrainingRun.objects.filter(lapsed, status=TrainingRun.Status.RUNNING):
        note = (
            f"[{now:%Y-%m-%d %H:%M:%S}] No heartbeat for {stale_after_s:g} s: the worker was lost."
        )
        if requeue and run.attempts < max_attempts:
            changed = TrainingRun.objects.filter(
                lapsed, pk=run.pk, status=TrainingRun.Status.RUNNING
            ).update(
                status=TrainingRun.Status.QUEUED,
                log=(run.log + "\n" + note + " Re-queued.").strip(),
            )
            if changed:
                # A loop run goes back to the loop's task, a reward-model run to the trainer's.
                job = _job_for(run.kind)
                transaction.on_commit(lambda pk=run.pk, job=job: job.enqueue(pk))
        else:
            if requeue:
                note += f" Not re-queued: it already had {run.attempts} attempts."
            changed = TrainingRun.objects.filter(
                lapsed, pk=run.pk, status=TrainingRun.Status.RUNNING
            ).update(
                status=TrainingRun.Status.FAILED,
                finished_at=now,
                log=(run.log + "\n" + note).strip(),
            )
        if changed:
            touched.append(run.pk)
            _status_announce(run.pk)
    return touched


@transaction.atomic
def model_version_promote(*, version: ModelVersion) -> ModelVersion:
    """Make ``version`` the one promoted model of its campaign and kind. Promoting an older
    version is the rollback. The partial unique constraint guards the invariant; demoting first
    in the same transaction keeps it satisfied."""
    list(
        ModelVersion.objects.select_for_update().filter(
            campaign_id=version.campaign_id, kind=version.kind
        )
    )
    ModelVersion.objects.filter(
        campaign_id=version.campaign_id, kind=version.kind, promoted=True
    ).exclude(pk=version.pk).update(promoted=False)
    ModelVersion.objects.filter(pk=version.pk).update(promoted=True, promoted_at=timezone.now())
    version.refresh_from_db()
    return version


def model_version_rollback(
    *, campaign: Campaign, kind: str = ModelKind.REWARD_MODEL
) -> ModelVersion | None:
    """Promote the newest version created before the currently promoted one; None if there is none."""
    current = selectors.model_version_promoted(campaign=campaign, kind=kind)
    if current is None:
        return None
    previous = (
        ModelVersion.objects.filter(
            campaign=campaign, kind=kind, created_at__lte=current.created_at
        )
        .exclude(pk=current.pk)
        .filter(Q(created_at__lt=current.created_at) | Q(pk__lt=current.pk))
        .order_by("-created_at", "-id")
        .first()
    )
    return model_version_promote(version=previous) if previous is not None else None


def retrain_rule_set(
    *,
    campaign: Campaign,
    every_judgements: int,
    config: RunConfig,
    enabled: bool = True,
    updated_by: Any | None = None,
) -> RetrainRule:
    """Create or replace the campaign's "retrain after N new judgements" rule. A new rule
    counts from the labels the campaign has now (it does not fire at once for old labels)."""
    if every_judgements < 1:
        raise ValueError(f"every_judgements must be ≥ 1, got {every_judgements}.")
    current = selectors.judgements_for_training(campaign=campaign).count()
    rule, _ = RetrainRule.objects.update_or_create(
        campaign=campaign,
        defaults={
            "every_judgements": every_judgements,
            "config": config.to_dict(),
            "enabled": enabled,
            "updated_by": updated_by,
        },
        create_defaults={
            "every_judgements": every_judgements,
            "config": config.to_dict(),
            "enabled": enabled,
            "updated_by": updated_by,
            "last_judgement_count": current,
        },
    )
    return rule


def retrain_rules_apply() -> list[TrainingRun]:
    """Queue a reward-model run for every enabled rule whose campaign has gathered
    ``every_judgements`` new usable judgements since the rule last fired, unless that campaign
    already has a queued or running run (it will be looked at again on the next pass).

    The rule's count moves with a conditional UPDATE, so two schedulers running at once queue
    one run, not two."""
    queued: list[TrainingRun] = []
    for rule in RetrainRule.objects.filter(enabled=True).select_related("campaign"):
        current = selectors.judgements_for_training(campaign=rule.campaign).count()
        if current - rule.last_judgement_count < rule.every_judgements:
            continue
        if TrainingRun.objects.filter(
            campaign=rule.campaign, status__in=TrainingRun.ACTIVE
        ).exists():
            continue
        with transaction.atomic():
            claimed = RetrainRule.objects.filter(
                pk=rule.pk, last_judgement_count=rule.last_judgement_count
            ).update(last_judgement_count=current)
            if not claimed:
                continue  # another scheduler fired this rule first
            run = run_enqueue(
                campaign=rule.campaign,
                config=RunConfig.from_dict(rule.config),
                triggered_by=rule.updated_by,
            )
            RetrainRule.objects.filter(pk=rule.pk).update(last_run=run)
        queued.append(run)
    return queued
