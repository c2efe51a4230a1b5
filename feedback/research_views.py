"""Researcher pages: a campaign's dashboard and the drill-down to one pair.

Thin like the labelling page: the server renders the frame (campaign name, progress, the
endpoints in ``data-*`` attributes); ``static/research/*.js`` fetches the statistics from the
research API (``/api/v1/campaigns/<id>/stats/``, ``…/pairs/``, ``/api/v1/pairs/<id>/``) and
draws them. Researchers and admins only: annotators and accounts without a role get 403.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from feedback import selectors
from feedback.models import Campaign
from feedback.roles import can_research

RESEARCH_ONLY = "Only researchers and admins can see campaign statistics."


def _require_research(request: HttpRequest) -> None:
    if not can_research(request.user):
        raise PermissionDenied(RESEARCH_ONLY)


def _campaign(campaign_id: int, request: HttpRequest) -> Campaign:
    try:
        return selectors.campaign_get_for_user(campaign_id=campaign_id, user=request.user)
    except Campaign.DoesNotExist:
        raise Http404(f"No campaign with id {campaign_id}.") from None


@login_required
def campaign_dashboard(request: HttpRequest, campaign_id: int) -> HttpResponse:
    _require_research(request)
    campaign = _campaign(campaign_id, request)
    return render(request, "research/dashboard.html", {"campaign": campaign})


@login_required
def pair_detail(request: HttpRequest, pair_id: int) -> HttpResponse:
    _require_research(request)
    campaign_id = selectors.pair_campaign_id(pair_id=pair_id)
    if campaign_id is None:
        raise Http404(f"No pair with id {pair_id}.")
    campaign = _campaign(campaign_id, request)
    return render(request, "research/pair.html", {"campaign": campaign, "pair_id": pair_id})


@login_required
def datasets(request: HttpRequest) -> HttpResponse:
    """Export dataset snapshots and download them: the form posts to the API, the export
    runs as a job, and the page polls each unfinished snapshot for its progress."""
    _require_research(request)
    from feedback.models import DatasetSnapshot

    campaigns = Campaign.objects.select_related("env").order_by("name")
    selected = request.GET.get("campaign", "")
    return render(request, "research/datasets.html", {
        "campaigns": campaigns, "selected": selected,
        "snapshots": DatasetSnapshot.objects.prefetch_related("campaigns")[:100],
    })
