"""The reward-learning half of the loop, end to end, through the real pieces: simulated
annotators label over HTTP, an admin starts a run through the API, a real worker process
trains it, the version is promoted through the API, and the active selector queues pairs
stamped with that version."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command

from feedback.models import Campaign, Judgement, Pair
from learning.models import ModelVersion, TrainingRun
from tests.feedback.conftest import quick_campaign  # noqa: F401 - a fixture
from tests.learning.test_simulate_annotators import simulate
from tests.learning.test_training_runs import TINY, run_worker


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_simulated_labels_train_a_model_that_chooses_the_next_pairs(
    live_server: Any, quick_campaign: Callable[..., Campaign], admin_user: Any,  # noqa: F811
    api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(name="loop", n_trajectories=4, length=20, pairs=12)
    simulate(live_server, campaign, "oracle", "--workers", "2")
    assert Judgement.objects.filter(pair__campaign=campaign, is_simulated=True).count() == 12

    client = api_client_for(admin_user)
    response = client.post("/api/v1/learning/runs/", {"campaign": campaign.pk, "config": TINY}, format="json")
    assert response.status_code == 201, response.content
    worker = run_worker()
    assert worker.returncode == 0, worker.stdout + worker.stderr
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert run.status == "succeeded", run.log
    assert run.metrics and run.progress == pytest.approx(1.0)
    version = ModelVersion.objects.get(run=run)
    assert "held_out_accuracy" in str(version.metrics)

    promoted = client.post(f"/api/v1/learning/model-versions/{version.pk}/promote/")
    assert promoted.status_code == 200, promoted.content
    before = set(Pair.objects.filter(campaign=campaign).values_list("segment_a_id", "segment_b_id"))
    call_command("select_pairs", "--campaign", str(campaign.pk), "--count", "3")
    chosen = Pair.objects.filter(campaign=campaign, selector="disagreement")
    assert chosen.count() == 3
    assert {p.model_version for p in chosen} == {str(version.pk)}
    assert before.isdisjoint((p.segment_a_id, p.segment_b_id) for p in chosen)
