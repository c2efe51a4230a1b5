"""Training runs as jobs: the run row, the runner's dataset, the API, and a real worker.

Worker tests start ``manage.py db_worker`` as a subprocess against the test database, as
``tests/feedback/test_tasks.py`` does; budgets are tiny (a few epochs of 8-unit nets).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from feedback.models import AnnotatorExclusion, Assignment, Judgement, Pair
from feedback.services import assignment_lease_next, judgement_record
from feedback.services.annotation import JudgementInput
from learning import selectors, services
from learning.core.checkpoints import load_reward_model, load_training_state
from learning.models import ModelVersion, TrainingRun
from learning.runner import RunConfig, build_dataset
from tests.feedback.conftest import quick_campaign  # noqa: F401 - a fixture
from tests.feedback.test_tasks import _database_url

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "net": {"hidden_sizes": [8], "ensemble_size": 2},
    "train": {"max_epochs": 3, "batch_size": 4, "device": "cpu", "held_out_fraction": 0.25},
}
# Enough epochs that the run is still training when the test acts on it.
LONG = {
    "net": {"hidden_sizes": [8], "ensemble_size": 2},
    "train": {
        "max_epochs": 1_000_000,
        "patience": 0,
        "batch_size": 4,
        "device": "cpu",
        "report_every_steps": 1,
    },
}


def label_all(campaign: Any, annotators: list[Any]) -> int:
    """Each annotator labels every pair they are leased, preferring the higher true return
    (ties of the mock data aside), as an oracle would. Returns the number of judgements."""
    count = 0
    for annotator in annotators:
        while (
            assignment := assignment_lease_next(campaign=campaign, annotator=annotator)
        ) is not None:
            pair = assignment.pair
            a_better = pair.segment_a.true_return >= pair.segment_b.true_return
            left = "left" if a_better == assignment.left_is_a else "right"
            judgement_record(
                assignment_id=assignment.pk,
                annotator=annotator,
                answer=JudgementInput(
                    preference=left,
                    left_desirability="unsure",
                    right_desirability="unsure",
                    elapsed_ms=4000,
                ),
            )
            count += 1
    return count


@pytest.fixture
def labelled(quick_campaign: Callable[..., Any], annotator: Any, other_annotator: Any) -> Any:  # noqa: F811
    """6 segments of 10 steps, 12 pairs, each labelled by two annotators (24 judgements)."""
    campaign = quick_campaign(name="learn", n_trajectories=3, length=20, pairs=12, overlap=2)
    assert label_all(campaign, [annotator, other_annotator]) == 24
    return campaign


def worker_env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PREFLAB_MODE": "test",
        "PREFLAB_TASKS_BACKEND": "db",
        "OMP_NUM_THREADS": "1",
    }


WORKER = [
    sys.executable,
    "manage.py",
    "db_worker",
    "--batch",
    "--no-startup-delay",
    "--interval",
    "0",
]


def run_worker() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        WORKER, check=False, cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=180
    )


def wait_for(predicate: Callable[[], bool], *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def running_with_heartbeat(run: TrainingRun, *, beats_after: Any = None) -> bool:
    run.refresh_from_db()
    if run.status != TrainingRun.Status.RUNNING or run.heartbeat_at is None or not run.metrics:
        return False
    return beats_after is None or run.heartbeat_at > beats_after


# --- the dataset a run learns from --------------------------------------------------------------


def test_the_runner_builds_preferences_from_judgements_and_their_npz_arrays(labelled: Any) -> None:
    judgements = list(selectors.judgements_for_training(campaign=labelled))
    dataset, snapshot = build_dataset(judgements, segment_length=10)

    assert dataset.num_pairs == 24 and snapshot["num_judgements"] == 24
    assert sorted(snapshot["judgement_ids"]) == sorted(j.pk for j in judgements)
    assert dataset.observations.shape == (6, 10, 3) and dataset.actions.shape == (6, 10, 1)
    assert dataset.true_returns is not None
    # The oracle labels agree with the true returns the runner attached.
    returns = dataset.true_returns[dataset.pairs]
    assert ((returns[:, 0] >= returns[:, 1]).float() == dataset.preferences).all()
    # Segment arrays are the trajectory's own slice.
    first = judgements[0].pair.segment_a
    from feedback.storage import load_npz

    arrays = load_npz(first.trajectory.arrays.name)
    row = int(dataset.pairs[0, 0])
    np.testing.assert_allclose(
        dataset.observations[row].numpy(), arrays["observations"][first.start : first.end]
    )


def test_cant_tell_repeats_and_excluded_annotators_are_left_out(
    labelled: Any, annotator: Any, other_annotator: Any, researcher: Any
) -> None:
    Judgement.objects.filter(pk=Judgement.objects.filter(annotator=annotator).first().pk).update(
        preference="cant_tell"
    )
    original = Pair.objects.filter(campaign=labelled).first()
    repeat = Pair.objects.create(
        campaign=labelled,
        segment_a=original.segment_b,
        segment_b=original.segment_a,
        repeat_of=original,
    )
    now = timezone.now()
    assignment = Assignment.objects.create(
        pair=repeat,
        annotator=annotator,
        left_is_a=True,
        leased_at=now,
        expires_at=now + timedelta(minutes=10),
        completed_at=now,
        holds_slot=False,
    )
    Judgement.objects.create(
        pair=repeat,
        annotator=annotator,
        assignment=assignment,
        preference="a",
        desirability_a="unsure",
        desirability_b="unsure",
        left_is_a=True,
    )
    ids = set(selectors.judgements_for_training(campaign=labelled).values_list("id", flat=True))
    assert len(ids) == 23  # 24 minus the can't-tell; the repeat is not counted

    AnnotatorExclusion.objects.create(
        campaign=labelled, annotator=other_annotator, excluded_by=researcher
    )
    kept = selectors.judgements_for_training(campaign=labelled)
    assert set(kept.values_list("annotator_id", flat=True)) == {annotator.pk}
    assert kept.count() == 11


# --- the run row's invariants -------------------------------------------------------------------


def test_the_database_refuses_unknown_statuses_and_two_promoted_versions(labelled: Any) -> None:
    run = TrainingRun.objects.create(campaign=labelled, config=RunConfig.from_dict(TINY).to_dict())
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.filter(pk=run.pk).update(status="paused")
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.filter(pk=run.pk).update(progress=1.5)
    ModelVersion.objects.create(run=run, campaign=labelled, artifact="a.pt", promoted=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(run=run, campaign=labelled, artifact="b.pt", promoted=True)


def test_promoting_an_older_version_rolls_back(labelled: Any) -> None:
    run = TrainingRun.objects.create(campaign=labelled)
    old = ModelVersion.objects.create(run=run, campaign=labelled, artifact="old.pt")
    new = ModelVersion.objects.create(run=run, campaign=labelled, artifact="new.pt")
    services.model_version_promote(version=new)
    assert selectors.model_version_promoted(campaign=labelled, kind="reward_model") == new
    assert services.model_version_rollback(campaign=labelled) == old
    old.refresh_from_db(), new.refresh_from_db()
    assert old.promoted and not new.promoted


def test_a_fresh_heartbeat_is_not_stale_and_a_lapsed_one_fails(labelled: Any) -> None:
    now = timezone.now()
    fresh = TrainingRun.objects.create(
        campaign=labelled, status="running", started_at=now, heartbeat_at=now
    )
    lapsed = TrainingRun.objects.create(
        campaign=labelled,
        status="running",
        started_at=now,
        heartbeat_at=now - timedelta(seconds=120),
    )
    assert services.run_mark_stale(stale_after_s=60) == [lapsed.pk]
    fresh.refresh_from_db(), lapsed.refresh_from_db()
    assert fresh.status == "running"
    assert lapsed.status == "failed" and "worker was lost" in lapsed.log


# --- the API: roles, validation, happy paths ---------------------------------------------------


@pytest.fixture
def cast(annotator: Any, researcher: Any, admin_user: Any) -> dict[str, Any]:
    return {
        "anonymous": None,
        "annotator": annotator,
        "researcher": researcher,
        "admin": admin_user,
    }


def _status_by_role(
    cast: dict[str, Any], api_client_for: Callable[..., Any], call: Callable[[Any], Any]
) -> dict[str, int]:
    return {role: call(api_client_for(user)).status_code for role, user in cast.items()}


def test_only_admins_start_runs(
    labelled: Any,
    cast: dict[str, Any],
    api_client_for: Callable[..., Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    body = {"campaign": labelled.pk, "config": TINY}
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        codes = _status_by_role(
            cast, api_client_for, lambda c: c.post("/api/v1/learning/runs/", body, format="json")
        )
    assert len(callbacks) == 1  # enqueued after commit, once
    assert codes == {"anonymous": 401, "annotator": 403, "researcher": 403, "admin": 201}
    run = TrainingRun.objects.get()
    assert run.status == "queued" and run.triggered_by == cast["admin"]
    assert run.config["net"]["hidden_sizes"] == [8] and run.config["train"]["max_epochs"] == 3
    assert run.config["train"]["lr"] == RunConfig.from_dict({}).train.lr  # defaults fill the rest
    assert run.dataset["num_judgements"] == 24
    [task] = DBTaskResult.objects.all()
    assert task.args_kwargs["args"] == [run.pk] and task.status == "READY"
    assert task.task_path == "learning.jobs.train_reward_model_job"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"train": {"max_epochs": 0}}, "max_epochs must be ≥ 1"),
        ({"train": {"max_epochs": "ten"}}, "config.train.max_epochs must be int"),
        ({"train": {"learning_rate": 0.1}}, "has no field(s) learning_rate"),
        ({"net": {"hidden_sizes": "64"}}, "config.net.hidden_sizes must be a list of ints"),
        ({"optimizer": {}}, "no section(s) optimizer"),
        ({"train": {"device": "tpu"}}, "device must be one of"),
    ],
)
def test_bad_config_overrides_are_a_400_naming_the_field(
    labelled: Any,
    admin_user: Any,
    api_client_for: Callable[..., Any],
    config: dict[str, Any],
    message: str,
) -> None:
    response = api_client_for(admin_user).post(
        "/api/v1/learning/runs/", {"campaign": labelled.pk, "config": config}, format="json"
    )
    assert response.status_code == 400
    assert message in response.json()["errors"]["config"][0]
    assert not TrainingRun.objects.exists() and not DBTaskResult.objects.exists()


def test_an_unknown_campaign_is_a_400(admin_user: Any, api_client_for: Callable[..., Any]) -> None:
    response = api_client_for(admin_user).post(
        "/api/v1/learning/runs/", {"campaign": 999}, format="json"
    )
    assert (
        response.status_code == 400
        and "No campaign with id 999" in response.json()["errors"]["campaign"][0]
    )


def test_researchers_and_admins_watch_runs(
    labelled: Any, cast: dict[str, Any], api_client_for: Callable[..., Any]
) -> None:
    run = services.run_enqueue(
        campaign=labelled, config=RunConfig.from_dict(TINY), triggered_by=None
    )
    codes = _status_by_role(
        cast, api_client_for, lambda c: c.get(f"/api/v1/learning/runs/{run.pk}/")
    )
    assert codes == {"anonymous": 401, "annotator": 403, "researcher": 200, "admin": 200}
    body = api_client_for(cast["researcher"]).get(f"/api/v1/learning/runs/{run.pk}/").json()
    assert body["status"] == "queued" and body["dataset"] == {"num_judgements": 24}
    assert api_client_for(cast["admin"]).get("/api/v1/learning/runs/9999/").status_code == 404


def test_only_admins_cancel_and_a_queued_run_is_never_trained(
    labelled: Any, cast: dict[str, Any], api_client_for: Callable[..., Any]
) -> None:
    run = services.run_enqueue(
        campaign=labelled, config=RunConfig.from_dict(TINY), triggered_by=None
    )
    codes = _status_by_role(
        cast, api_client_for, lambda c: c.post(f"/api/v1/learning/runs/{run.pk}/cancel/")
    )
    assert codes == {"anonymous": 401, "annotator": 403, "researcher": 403, "admin": 200}
    run.refresh_from_db()
    assert run.status == "cancelled"
    again = api_client_for(cast["admin"]).post(f"/api/v1/learning/runs/{run.pk}/cancel/")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    # The job finds nothing to claim.
    from learning.jobs import train_reward_model_job

    assert train_reward_model_job.call(run.pk) == "not claimed"


def test_only_admins_list_and_promote_model_versions(
    labelled: Any,
    quick_campaign: Callable[..., Any],  # noqa: F811
    cast: dict[str, Any],
    api_client_for: Callable[..., Any],
) -> None:
    run = TrainingRun.objects.create(campaign=labelled)
    version = ModelVersion.objects.create(
        run=run, campaign=labelled, artifact="v.pt", metrics={"held_out_accuracy": 0.9}
    )
    other = quick_campaign(name="other", pairs=0)
    ModelVersion.objects.create(
        run=TrainingRun.objects.create(campaign=other), campaign=other, artifact="w.pt"
    )
    url = f"/api/v1/learning/model-versions/?campaign={labelled.pk}"
    codes = _status_by_role(cast, api_client_for, lambda c: c.get(url))
    assert codes == {"anonymous": 401, "annotator": 403, "researcher": 403, "admin": 200}
    assert [v["id"] for v in api_client_for(cast["admin"]).get(url).json()] == [version.pk]
    assert (
        api_client_for(cast["admin"]).get("/api/v1/learning/model-versions/?campaign=x").status_code
        == 400
    )

    promote = f"/api/v1/learning/model-versions/{version.pk}/promote/"
    codes = _status_by_role(cast, api_client_for, lambda c: c.post(promote))
    assert codes == {"anonymous": 401, "annotator": 403, "researcher": 403, "admin": 200}
    version.refresh_from_db()
    assert version.promoted
    assert (
        api_client_for(cast["admin"])
        .post("/api/v1/learning/model-versions/999/promote/")
        .status_code
        == 404
    )


def test_the_command_enqueues_and_prints_the_run_id(
    labelled: Any, capsys: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "train_reward_model",
            "--campaign",
            str(labelled.pk),
            "--ensemble-size",
            "2",
            "--max-epochs",
            "4",
        )
    run = TrainingRun.objects.get()
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run.pk)
    assert run.config["net"]["ensemble_size"] == 2 and run.config["train"]["max_epochs"] == 4
    assert DBTaskResult.objects.get().status == "READY"


# --- real workers ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_admin_starts_a_run_and_a_db_worker_trains_it(
    labelled: Any, admin_user: Any, api_client_for: Callable[..., Any]
) -> None:
    response = api_client_for(admin_user).post(
        "/api/v1/learning/runs/", {"campaign": labelled.pk, "config": TINY}, format="json"
    )
    assert response.status_code == 201, response.content

    worker = run_worker()
    assert worker.returncode == 0, worker.stdout + worker.stderr

    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert run.status == "succeeded", run.log
    assert run.progress == 1.0 and run.device == "cpu" and run.attempts == 1
    assert [m["epoch"] for m in run.metrics] == [1.0, 2.0, 3.0]
    assert all("held_out_accuracy" in m for m in run.metrics)
    assert run.dataset["num_judgements"] == 24 and len(run.dataset["judgement_ids"]) == 24
    [version] = run.model_versions.all()
    assert (
        version.metrics["num_held_out_pairs"] == 6
        and 0.0 <= version.metrics["held_out_accuracy"] <= 1.0
    )
    assert version.metrics["pearson"] is not None  # true returns are known for this campaign
    loaded = load_reward_model(Path(settings.MEDIA_ROOT) / version.artifact.name)
    assert loaded.ensemble.members == 2 and loaded.train_config is not None
    assert loaded.train_config.max_epochs == 3
    body = api_client_for(admin_user).get(f"/api/v1/learning/runs/{run.pk}/").json()
    assert body["status"] == "succeeded" and body["model_versions"] == [version.pk]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_with_rq_configured_a_run_goes_to_redis_and_an_rq_worker_trains_it(
    labelled: Any, admin_user: Any, api_client_for: Callable[..., Any], settings: Any
) -> None:
    """The other runtime column (DESIGN, Runtime): the same job through RQ on Redis."""
    import django_rq

    from tests.feedback.test_tasks import REDIS_URL

    settings.RQ_QUEUES = {name: {"URL": REDIS_URL} for name in ("default", "gpu")}
    # django_tasks resets its backends when TASKS changes (setting_changed).
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default", "gpu"]}
    }
    django_rq.get_queue("default").empty()

    response = api_client_for(admin_user).post(
        "/api/v1/learning/runs/", {"campaign": labelled.pk, "config": TINY}, format="json"
    )
    assert response.status_code == 201, response.content
    assert django_rq.get_queue("default").count == 1
    assert not DBTaskResult.objects.exists()  # went to Redis, not the database queue

    env = {**worker_env(), "PREFLAB_TASKS_BACKEND": "rq", "REDIS_URL": REDIS_URL}
    worker = subprocess.run(
        [sys.executable, "manage.py", "rqworker", "default", "--burst",
         "--job-class", "django_tasks_rq.Job"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert run.status == "succeeded", run.log + worker.stdout + worker.stderr
    assert [m["epoch"] for m in run.metrics] == [1.0, 2.0, 3.0]
    assert run.model_versions.count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cancelling_a_running_run_stops_the_worker_at_its_next_report(
    labelled: Any, admin_user: Any, api_client_for: Callable[..., Any]
) -> None:
    run = services.run_enqueue(
        campaign=labelled, config=RunConfig.from_dict(LONG), triggered_by=admin_user
    )
    worker = subprocess.Popen(
        WORKER,
        cwd=ROOT,
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: running_with_heartbeat(run))
        response = api_client_for(admin_user).post(f"/api/v1/learning/runs/{run.pk}/cancel/")
        assert response.status_code == 200 and response.json()["cancel_requested"]
        output, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, output
    run.refresh_from_db()
    assert run.status == "cancelled", run.log
    assert run.progress < 1.0 and run.metrics
    assert not run.model_versions.exists()
    assert run.checkpoint.name  # the weights so far are kept


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_leaves_the_run_failed_or_requeued_never_running(
    labelled: Any, admin_user: Any
) -> None:
    run = services.run_enqueue(
        campaign=labelled, config=RunConfig.from_dict(LONG), triggered_by=admin_user
    )
    worker = subprocess.Popen(
        WORKER, cwd=ROOT, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # Killed once its first training state is saved (after epoch 1) and it trains on.
        wait_for(lambda: running_with_heartbeat(run) and bool(run.checkpoint.name))
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    run.refresh_from_db()
    assert run.status == "running"  # nobody is left to say otherwise...
    beat = run.heartbeat_at
    time.sleep(1.0)
    run.refresh_from_db()
    assert run.heartbeat_at == beat  # ...and no heartbeat comes any more

    # A sweep with a short staleness window re-queues it; a fresh worker resumes it from its
    # checkpoint and trains it to the end.
    assert services.run_mark_stale(stale_after_s=0.5, requeue=True) == [run.pk]
    run.refresh_from_db()
    assert run.status == "queued" and "worker was lost" in run.log
    saved = load_training_state(Path(settings.MEDIA_ROOT) / run.checkpoint.name).epoch
    assert saved >= 1
    # Two epochs past the checkpoint so this test ends (only max_epochs may change for a
    # resume); the re-run uses the recorded judgements.
    budget = {**LONG, "train": {**LONG["train"], "max_epochs": saved + 2}}
    TrainingRun.objects.filter(pk=run.pk).update(config=RunConfig.from_dict(budget).to_dict())
    rerun = run_worker()
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    run.refresh_from_db()
    assert run.status == "succeeded", run.log
    assert run.attempts == 2 and run.model_versions.count() == 1
    assert f"Attempt 2: resumed from epoch {saved}." in run.log
    # The series carries on from the checkpoint's history: no epoch twice, none missing.
    assert [m["epoch"] for m in run.metrics] == [float(e) for e in range(1, saved + 3)]
    assert run.result["epochs"] == saved + 2
    # The final model replaced the training state as the run's checkpoint.
    final = Path(settings.MEDIA_ROOT) / run.checkpoint.name
    assert "training" not in torch.load(final, weights_only=True)


@pytest.mark.django_db(transaction=True)
def test_a_sweep_without_requeue_marks_a_lost_run_failed(labelled: Any) -> None:
    run = services.run_enqueue(
        campaign=labelled, config=RunConfig.from_dict(TINY), triggered_by=None
    )
    assert services.run_claim(run_id=run.pk) is not None
    later = timezone.now() + timedelta(seconds=30)
    assert services.run_mark_stale(stale_after_s=10, now=later) == [run.pk]
    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at == later
    # A worker that comes back late cannot flip it to succeeded.
    services.run_finish(run=run, status=TrainingRun.Status.SUCCEEDED)
    run.refresh_from_db()
    assert run.status == "failed"


def _lost_run(campaign: Any, *, attempts: int = 1) -> TrainingRun:
    """A run a worker claimed an hour ago and never heartbeat again."""
    an_hour_ago = timezone.now() - timedelta(hours=1)
    return TrainingRun.objects.create(
        campaign=campaign,
        config=RunConfig.from_dict(TINY).to_dict(),
        status="running",
        started_at=an_hour_ago,
        heartbeat_at=an_hour_ago,
        attempts=attempts,
    )


def test_the_sweep_command_fails_lost_runs_or_requeues_them(
    quick_campaign: Callable[..., Any],  # noqa: F811
    capsys: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    campaign = quick_campaign(name="sweep", pairs=0)
    lost, alive = _lost_run(campaign), _lost_run(campaign)
    TrainingRun.objects.filter(pk=alive.pk).update(heartbeat_at=timezone.now())

    call_command("sweep_stale_runs", "--stale-after", "60")
    assert capsys.readouterr().out.strip() == f"Swept 1 stale run(s): {lost.pk}."
    lost.refresh_from_db(), alive.refresh_from_db()
    assert lost.status == "failed" and "worker was lost" in lost.log
    assert alive.status == "running"

    again = _lost_run(campaign)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("sweep_stale_runs", "--requeue")  # the default window: 300 s
    again.refresh_from_db()
    assert again.status == "queued" and "Re-queued" in again.log
    assert DBTaskResult.objects.get().args_kwargs["args"] == [again.pk]
    call_command("sweep_stale_runs")
    assert capsys.readouterr().out.strip().endswith("No stale runs.")
    with pytest.raises(CommandError, match="positive number of seconds"):
        call_command("sweep_stale_runs", "--stale-after", "0")
    with pytest.raises(CommandError, match="--every must be zero or a positive"):
        call_command("sweep_stale_runs", "--every", "-1")


def test_the_sweep_command_keeps_sweeping_with_every(
    quick_campaign: Callable[..., Any],  # noqa: F811
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from learning.management.commands import sweep_stale_runs

    campaign = quick_campaign(name="sweep", pairs=0)
    lost = _lost_run(campaign)
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt  # how the demo's trap ends it

    monkeypatch.setattr(sweep_stale_runs.time, "sleep", nap)
    with pytest.raises(KeyboardInterrupt):
        call_command("sweep_stale_runs", "--every", "60")
    assert naps == [60.0, 60.0]  # two passes: the lost run, then nothing to say
    assert capsys.readouterr().out.strip() == f"Swept 1 stale run(s): {lost.pk}."


def test_every_job_first_sweeps_what_a_dead_worker_left(
    quick_campaign: Callable[..., Any],  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    from learning.jobs import train_reward_model_job

    campaign = quick_campaign(name="sweep", pairs=0)
    lost, worn_out = _lost_run(campaign, attempts=1), _lost_run(campaign, attempts=3)
    with django_capture_on_commit_callbacks(execute=True):
        assert train_reward_model_job.call(999_999) == "not claimed"  # any job sweeps first
    lost.refresh_from_db(), worn_out.refresh_from_db()
    assert lost.status == "queued" and "Re-queued" in lost.log
    assert [t.args_kwargs["args"] for t in DBTaskResult.objects.all()] == [[lost.pk]]
    # A run that lost its worker on each of MAX_ATTEMPTS attempts is not tried again.
    assert worn_out.status == "failed" and "already had 3 attempts" in worn_out.log


def test_a_lost_loop_run_is_requeued_onto_the_loop_task_not_the_reward_trainer(
    quick_campaign: Callable[..., Any],  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    campaign = quick_campaign(name="sweep", pairs=0)
    reward, loop = _lost_run(campaign), _lost_run(campaign)
    TrainingRun.objects.filter(pk=loop.pk).update(kind="loop")
    with django_capture_on_commit_callbacks(execute=True):
        assert sorted(services.run_mark_stale(requeue=True)) == sorted([reward.pk, loop.pk])
    queued = {t.args_kwargs["args"][0]: t.task_path for t in DBTaskResult.objects.all()}
    assert queued == {
        reward.pk: "learning.jobs.train_reward_model_job",
        loop.pk: "learning.jobs.loop_iteration_job",
    }


# --- a resumed run and the judgements it was queued with ----------------------------------------


class WorkerKilled(BaseException):
    """Stands in for SIGKILL in-process: nothing catches it, nothing after it runs."""


def _crash_after_first_checkpoint(labelled: Any, monkeypatch: pytest.MonkeyPatch) -> TrainingRun:
    """A run whose first attempt saved its epoch-1 training state and then lost its worker,
    swept and re-queued: what a fresh worker finds after the crash test's SIGKILL."""
    from learning import runner

    real = runner.RunReporter.on_checkpoint

    def save_then_die(self: Any, state: Any) -> None:
        real(self, state)
        raise WorkerKilled

    run = services.run_enqueue(
        campaign=labelled, config=RunConfig.from_dict(TINY), triggered_by=None
    )
    run = services.run_claim(run_id=run.pk)
    with monkeypatch.context() as patch:
        patch.setattr(runner.RunReporter, "on_checkpoint", save_then_die)
        with pytest.raises(WorkerKilled):
            runner.train_run(run)
    run.refresh_from_db()
    assert run.status == "running" and "labels_sha256" in run.dataset
    assert load_training_state(Path(settings.MEDIA_ROOT) / run.checkpoint.name).epoch == 1
    later = timezone.now() + timedelta(seconds=600)
    assert services.run_mark_stale(stale_after_s=60, requeue=True, now=later) == [run.pk]
    return run


def _exclude_other_annotator(judgement: Judgement, researcher: Any) -> list[int]:
    AnnotatorExclusion.objects.create(
        campaign=judgement.pair.campaign, annotator=judgement.annotator, excluded_by=researcher
    )
    return list(
        Judgement.objects.filter(annotator=judgement.annotator).values_list("id", flat=True)
    )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("deleted", "can no longer be used (ids {ids})"),
        ("cant_tell", "can no longer be used (ids {ids})"),
        ("excluded", "can no longer be used (ids {ids})"),
        ("answer_edited", "were edited since its first attempt"),
        ("desirability_edited", "were edited since its first attempt"),
    ],
)
def test_a_run_whose_judgements_changed_before_it_resumed_fails_saying_which(
    labelled: Any, researcher: Any, monkeypatch: pytest.MonkeyPatch, change: str, says: str
) -> None:
    """Resuming would continue weights fitted to labels that are gone, on a held-out split
    drawn for another number of pairs; training on other data would make the snapshot lie."""
    from learning.jobs import train_reward_model_job

    run = _crash_after_first_checkpoint(labelled, monkeypatch)
    checkpoint = run.checkpoint.name
    victim = Judgement.objects.get(pk=run.dataset["judgement_ids"][5])
    gone = [victim.pk]
    if change == "deleted":
        victim.delete()
    elif change == "cant_tell":
        Judgement.objects.filter(pk=victim.pk).update(preference="cant_tell")
    elif change == "excluded":
        gone = _exclude_other_annotator(victim, researcher)
    elif change == "answer_edited":
        flipped = "b" if victim.preference == "a" else "a"
        Judgement.objects.filter(pk=victim.pk).update(preference=flipped)
    else:  # every clip now desirable (one label alone would only make its clip disputed)
        Judgement.objects.filter(pair__campaign=labelled).update(
            desirability_a="desirable", desirability_b="desirable"
        )

    assert train_reward_model_job.call(run.pk) == "failed"
    run.refresh_from_db()
    assert run.status == "failed" and run.attempts == 2
    assert "SnapshotChanged" in run.log
    assert says.format(ids=", ".join(map(str, sorted(gone)))) in run.log
    assert "start a new run" in run.log
    assert not run.model_versions.exists()
    assert run.checkpoint.name == checkpoint  # the first attempt's state is kept as it was


def test_a_run_whose_judgements_are_unchanged_resumes_from_its_checkpoint(
    labelled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from learning.jobs import train_reward_model_job

    run = _crash_after_first_checkpoint(labelled, monkeypatch)
    sha = run.dataset["labels_sha256"]
    assert train_reward_model_job.call(run.pk) == "succeeded"
    run.refresh_from_db()
    assert "Attempt 2: resumed from epoch 1." in run.log
    assert [m["epoch"] for m in run.metrics] == [1.0, 2.0, 3.0]
    assert run.dataset["labels_sha256"] == sha and run.model_versions.count() == 1


def test_a_worker_swept_while_it_stalled_stops_and_leaves_the_run_to_the_next_attempt(
    labelled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that stalls past the heartbeat window (not dead) is swept, and another worker
    claims the run; when the first wakes up it must not write progress, a checkpoint, a model
    version or a final status over the attempt that now owns the run."""
    from learning import runner

    stalled = services.run_claim(
        run_id=services.run_enqueue(
            campaign=labelled, config=RunConfig.from_dict(TINY), triggered_by=None
        ).pk
    )
    real = runner.RunReporter.on_step

    def stall_then_report(self: Any, step: int, metrics: Any) -> bool:
        if TrainingRun.objects.get(pk=stalled.pk).attempts == 1:  # the first report: stall
            later = timezone.now() + timedelta(minutes=10)
            assert services.run_mark_stale(requeue=True, now=later) == [stalled.pk]
            assert services.run_claim(run_id=stalled.pk).attempts == 2
        return real(self, step, metrics)

    monkeypatch.setattr(runner.RunReporter, "on_step", stall_then_report)
    assert runner.train_run(stalled) is None
    services.run_finish(run=stalled, status=TrainingRun.Status.CANCELLED, log="late")

    run = TrainingRun.objects.get(pk=stalled.pk)
    assert (run.status, run.attempts) == ("running", 2)  # the new attempt's, untouched
    assert run.metrics == [] and run.progress == 0.0 and not run.checkpoint.name
    assert not run.model_versions.exists() and "late" not in run.log


def test_a_long_epoch_still_heartbeats_inside_it(labelled: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One epoch can outlast the stale-run window on a big dataset; the run must heartbeat
    within it, not only at its end, or a sweep would take a live worker for a dead one."""
    from learning import runner

    config = RunConfig.from_dict({**TINY, "train": {**TINY["train"], "max_epochs": 1, "batch_size": 1}})
    assert config.train.report_every_steps == 0  # the run asked for no reports inside epochs
    run = services.run_claim(
        run_id=services.run_enqueue(campaign=labelled, config=config, triggered_by=None).pk
    )
    beats: list[tuple[int, bool]] = []
    real = runner.RunReporter.on_step

    def watch(self: Any, step: int, metrics: Any) -> bool:
        before = TrainingRun.objects.get(pk=run.pk).heartbeat_at
        answer = real(self, step, metrics)
        beats.append((step, TrainingRun.objects.get(pk=run.pk).heartbeat_at != before))
        return answer

    monkeypatch.setattr(runner, "HEARTBEAT_EVERY_STEPS", 5)  # a tiny epoch of 18 steps
    monkeypatch.setattr(runner.RunReporter, "on_step", watch)
    monkeypatch.setattr(runner.RunReporter, "__init__", _no_throttle(runner.RunReporter.__init__))
    assert runner.train_run(run) is not None
    inside = [step for step, beat in beats[:-1] if beat]  # all but the epoch-end report
    assert inside[:3] == [5, 10, 15]
    assert TrainingRun.objects.get(pk=run.pk).config["train"]["report_every_steps"] == 0


def _no_throttle(init: Any) -> Any:
    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, "min_interval_s": 0.0})

    return patched


def test_judgements_changed_before_the_first_attempt_fail_it_too(
    labelled: Any, researcher: Any
) -> None:
    from learning.jobs import train_reward_model_job

    run = services.run_enqueue(
        campaign=labelled, config=RunConfig.from_dict(TINY), triggered_by=None
    )
    victim = run.dataset["judgement_ids"][0]
    Judgement.objects.filter(pk=victim).delete()
    assert train_reward_model_job.call(run.pk) == "failed"
    run.refresh_from_db()
    assert f"can no longer be used (ids {victim})" in run.log
    assert run.dataset["num_judgements"] == 24  # the snapshot still says what it was queued with


def test_the_schema_documents_the_learning_endpoints(
    api_client_for: Callable[..., Any], db: Any
) -> None:
    schema = json.loads(api_client_for(None).get("/api/schema/?format=json").content)
    assert {p for p in schema["paths"] if p.startswith("/api/v1/learning/")} == {
        "/api/v1/learning/runs/",
        "/api/v1/learning/runs/{run_id}/",
        "/api/v1/learning/runs/{run_id}/cancel/",
        "/api/v1/learning/model-versions/",
        "/api/v1/learning/model-versions/{version_id}/promote/",
        "/api/v1/learning/campaigns/{campaign_id}/retrain-rule/",
    }
    assert {"201", "400", "403"} <= set(
        schema["paths"]["/api/v1/learning/runs/"]["post"]["responses"]
    )


def test_a_run_without_usable_judgements_fails_with_the_reason_in_its_log(
    quick_campaign: Callable[..., Any],  # noqa: F811
) -> None:
    from learning.jobs import train_reward_model_job

    campaign = quick_campaign(name="unlabelled", pairs=3)
    run = services.run_enqueue(
        campaign=campaign, config=RunConfig.from_dict(TINY), triggered_by=None
    )
    assert train_reward_model_job.call(run.pk) == "failed"
    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at is not None
    assert "NotEnoughData" in run.log and "collect some labels first" in run.log
    assert not run.model_versions.exists()


def test_watching_a_run_costs_a_fixed_number_of_queries(
    labelled: Any,
    researcher: Any,
    api_client_for: Callable[..., Any],
    django_assert_num_queries: Any,
) -> None:
    run = services.run_enqueue(
        campaign=labelled, config=RunConfig.from_dict(TINY), triggered_by=researcher
    )
    client = api_client_for(researcher)
    # token+user+groups (auth), the run with campaign and user, its model versions
    with django_assert_num_queries(3):
        assert client.get(f"/api/v1/learning/runs/{run.pk}/").status_code == 200
