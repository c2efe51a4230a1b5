""" "Retrain after N new judgements": the rule, its API (admins only) and the command that fires
due rules, against real judgements and the real task queue."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from feedback import services as feedback_services
from feedback.models import Campaign
from feedback.services.annotation import JudgementInput
from learning import services
from learning.models import RetrainRule, TrainingRun
from learning.runner import RunConfig
from tests.feedback.conftest import quick_campaign  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db

TINY = {"net": {"hidden_sizes": [8], "ensemble_size": 2}, "train": {"max_epochs": 2}}


def label(campaign: Campaign, annotator: Any, count: int) -> None:
    """Lease and answer ``count`` pairs through the annotation services, as the page does."""
    for _ in range(count):
        assignment = feedback_services.assignment_lease_next(campaign=campaign, annotator=annotator)
        assert assignment is not None, "the campaign ran out of pairs"
        feedback_services.judgement_record(
            assignment_id=assignment.pk,
            annotator=annotator,
            answer=JudgementInput("left", "unsure", "unsure", elapsed_ms=5000),
        )


def apply() -> str:
    out = io.StringIO()
    call_command("apply_retrain_rules", stdout=out)
    return out.getvalue()


def test_a_rule_fires_after_every_n_new_judgements_and_waits_for_an_active_run(
    quick_campaign: Callable[..., Campaign],  # noqa: F811
    annotator: Any,
    admin_user: Any,
) -> None:
    campaign = quick_campaign(name="rule", n_trajectories=6, pairs=15)
    label(campaign, annotator, 2)  # labels from before the rule do not count toward it
    rule = services.retrain_rule_set(
        campaign=campaign, every_judgements=5, config=RunConfig.from_dict(TINY),
        updated_by=admin_user,
    )  # fmt: skip
    assert rule.last_judgement_count == 2

    label(campaign, annotator, 4)
    assert "No retrain rule is due." in apply()
    assert not TrainingRun.objects.exists()

    label(campaign, annotator, 1)  # 5 new usable judgements
    output = apply()
    run = TrainingRun.objects.get()
    assert f"Queued training run {run.pk}" in output
    assert (run.kind, run.status, run.triggered_by) == ("reward_model", "queued", admin_user)
    assert run.dataset["num_judgements"] == 7
    assert run.config == RunConfig.from_dict(TINY).to_dict()
    rule.refresh_from_db()
    assert (rule.last_judgement_count, rule.last_run) == (7, run)

    # Due again, but the campaign's run is still queued: nothing new until it finishes.
    label(campaign, annotator, 5)
    assert apply().startswith("No retrain rule is due.")
    assert TrainingRun.objects.count() == 1
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded")
    apply()
    assert TrainingRun.objects.count() == 2

    # A disabled rule never fires.
    RetrainRule.objects.filter(pk=rule.pk).update(enabled=False)
    label(campaign, annotator, 3)
    TrainingRun.objects.update(status="succeeded")
    assert "No retrain rule is due." in apply()


def test_the_retrain_rule_api_is_for_admins_and_checks_its_input(
    quick_campaign: Callable[..., Campaign], admin_user: Any, researcher: Any,  # noqa: F811
    annotator: Any, api_client_for: Callable[..., Any],
) -> None:  # fmt: skip
    campaign = quick_campaign(name="api")
    url = f"/api/v1/learning/campaigns/{campaign.pk}/retrain-rule/"
    body = {"every_judgements": 50, "config": TINY}
    for user, expected in ((None, 401), (annotator, 403), (researcher, 403)):
        assert api_client_for(user).put(url, body, format="json").status_code == expected
    admin = api_client_for(admin_user)
    assert admin.get(url).status_code == 404

    bad = admin.put(url, {"every_judgements": 0}, format="json")
    assert bad.status_code == 400 and "every_judgements" in bad.content.decode()
    bad = admin.put(url, {"every_judgements": 5, "config": {"train": {"lr": -1}}}, format="json")
    assert bad.status_code == 400 and "lr must be > 0" in bad.content.decode()
    assert not RetrainRule.objects.exists()

    response = admin.put(url, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["every_judgements"] == 50 and response.json()["enabled"] is True
    response = admin.put(url, {**body, "enabled": False}, format="json")
    assert admin.get(url).json()["enabled"] is False
    assert RetrainRule.objects.count() == 1
    assert admin.get("/api/v1/learning/campaigns/9999/retrain-rule/").status_code == 404


def test_the_command_rejects_a_negative_interval() -> None:
    with pytest.raises(CommandError, match="--every must be zero or a positive"):
        call_command("apply_retrain_rules", "--every", "-1")
