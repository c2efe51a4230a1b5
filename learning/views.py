"""Admin training pages: a campaign's runs and model versions, and one run's live view.

Thin like the research pages: the server renders the lists and the run's current state; the
scripts in ``static/learning/`` call the learning API (start, cancel, promote) and keep the
run page current over ``ws/runs/<id>/``, polling ``/api/v1/learning/runs/<id>/`` while the
socket is down. Researchers may look; only admins see the start form and the buttons (the
API refuses the actions to anyone else). Annotators and accounts without a role get 403.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from feedback import selectors as feedback_selectors
from feedback.models import Campaign
from feedback.roles import can_research, is_admin
from learning import selectors
from learning.broadcast import broadcast_reaches_other_processes, run_state
from learning.core.configs import RewardNetConfig, RewardTrainingConfig
from learning.models import ModelVersion, RetrainRule, RunKind, TrainingRun

TRAINING_ONLY = "Only researchers and admins can see training runs."


def _require_research(request: HttpRequest) -> None:
    if not can_research(request.user):
        raise PermissionDenied(TRAINING_ONLY)


def _campaign(campaign_id: int, request: HttpRequest) -> Campaign:
    try:
        return feedback_selectors.campaign_get_for_user(campaign_id=campaign_id, user=request.user)
    except Campaign.DoesNotExist:
        raise Http404(f"No campaign with id {campaign_id}.") from None


def _version_rows(versions: list[ModelVersion]) -> list[dict[str, Any]]:
    """Newest first; the promoted row gets the version to roll back to (the next older one)."""
    rows = []
    for index, version in enumerate(versions):
        older = versions[index + 1] if index + 1 < len(versions) else None
        rows.append(
            {
                "version": version,
                "accuracy": version.metrics.get("held_out_accuracy"),
                "ece": version.metrics.get("held_out_ece"),
                "pearson": version.metrics.get("pearson"),
                "rollback_to": older if version.promoted else None,
            }
        )
    return rows


@login_required
def index(request: HttpRequest) -> HttpResponse:
    _require_research(request)
    campaigns = Campaign.objects.order_by("-id")
    return render(request, "learning/index.html", {"campaigns": campaigns})


@login_required
def campaign_training(request: HttpRequest, campaign_id: int) -> HttpResponse:
    _require_research(request)
    campaign = _campaign(campaign_id, request)
    runs = list(TrainingRun.objects.filter(campaign=campaign).select_related("triggered_by")[:50])
    versions = list(selectors.model_versions_for(campaign_id=campaign.pk))
    net, train = RewardNetConfig(), RewardTrainingConfig()
    defaults = {
        "ensemble_size": net.ensemble_size,
        "hidden_sizes": ", ".join(str(h) for h in net.hidden_sizes),
        "max_epochs": train.max_epochs,
        "lr": train.lr,
    }
    from learning.core.finetune import FINETUNE_ALGORITHMS, FinetuneConfig
    from learning.loop import POLICY_INITS, REWARDS, SELECTORS, LoopSettings

    loop = LoopSettings()
    loop_defaults = {
        "algos": FINETUNE_ALGORITHMS,
        "selectors": SELECTORS,
        "inits": POLICY_INITS,
        "rewards": REWARDS,
        "total_steps": FinetuneConfig().total_steps,
        "episodes": loop.episodes,
        "pairs": loop.pairs,
    }
    loop_runs = [run for run in runs if run.kind == RunKind.LOOP]
    return render(
        request,
        "learning/campaign.html",
        {
            "campaign": campaign,
            "runs": runs,
            "loop_runs": loop_runs,
            "retrain_rule": RetrainRule.objects.filter(campaign=campaign).first(),
            "loop_defaults": loop_defaults,
            "versions": _version_rows(versions),
            "can_manage": is_admin(request.user),
            "defaults": defaults,
        },
    )


@login_required
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    _require_research(request)
    try:
        run = selectors.training_run_get(run_id=run_id)
    except TrainingRun.DoesNotExist:
        raise Http404(f"No training run with id {run_id}.") from None
    return render(
        request,
        "learning/run.html",
        {
            "run": run,
            "campaign": run.campaign,
            "state": run_state(run),
            "can_manage": is_admin(request.user),
            "shared_layer": broadcast_reaches_other_processes(),
        },
    )
