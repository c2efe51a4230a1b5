"""Researcher pages: the campaign dashboard and the pair drill-down.

Researchers and admins see them; annotators and accounts with no PrefLab role get 403, and
anonymous visitors are sent to the login page. The pages are frames that the research API
fills in, so what is checked here is who gets in, what the server renders (campaign name,
progress, the endpoints the scripts read) and 404s for unknown ids.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from feedback.models import Campaign, Pair

ROLES = ["anonymous", "annotator", "researcher", "admin_user", "outsider"]
EXPECTED = {
    "anonymous": 302,
    "annotator": 403,
    "researcher": 200,
    "admin_user": 200,
    "outsider": 403,
}


def _client(request: pytest.FixtureRequest, role: str) -> Client:
    client = Client()
    if role != "anonymous":
        client.force_login(request.getfixturevalue(role))
    return client


@pytest.fixture
def campaign(make_campaign: Any) -> Campaign:
    return make_campaign(name="Cheetah run, batch 7", pairs=3, overlap=2)


def _dashboard_url(campaign: Campaign) -> str:
    return reverse("feedback:research-campaign", args=[campaign.pk])


def _pair_url(pair_id: int) -> str:
    return reverse("feedback:research-pair", args=[pair_id])


@pytest.mark.parametrize("role", ROLES)
def test_dashboard_is_for_researchers_and_admins(
    request: pytest.FixtureRequest, campaign: Campaign, role: str
) -> None:
    response = _client(request, role).get(_dashboard_url(campaign))

    assert response.status_code == EXPECTED[role]
    if role == "anonymous":
        assert response["Location"].startswith(reverse("login") + "?next=")
    elif response.status_code == 200:
        assert campaign.name in response.content.decode()


@pytest.mark.parametrize("role", ROLES)
def test_pair_page_is_for_researchers_and_admins(
    request: pytest.FixtureRequest, campaign: Campaign, role: str
) -> None:
    pair = Pair.objects.filter(campaign=campaign).first()
    assert pair is not None

    response = _client(request, role).get(_pair_url(pair.pk))

    assert response.status_code == EXPECTED[role]
    if role == "anonymous":
        assert response["Location"].startswith(reverse("login") + "?next=")
    elif response.status_code == 200:
        body = response.content.decode()
        assert campaign.name in body
        assert f"Pair {pair.pk}" in body


def test_dashboard_renders_progress_and_the_endpoints_its_script_reads(
    client: Client, researcher: Any, campaign: Campaign
) -> None:
    client.force_login(researcher)

    body = client.get(_dashboard_url(campaign)).content.decode()

    # 3 pairs × overlap 2 = 6 labels wanted, none yet.
    assert '<span data-progress="done">0</span>' in body
    assert '<span data-progress="wanted">6</span>' in body
    assert '<span data-progress="pairs">3</span>' in body
    assert f'data-stats-url="/api/v1/campaigns/{campaign.pk}/stats/"' in body
    assert f'data-pairs-url="/api/v1/campaigns/{campaign.pk}/pairs/"' in body
    assert f'data-exclusions-url="/api/v1/campaigns/{campaign.pk}/exclusions/"' in body
    assert f'data-socket-path="/ws/campaigns/{campaign.pk}/"' in body
    assert 'name="csrf-token"' in body
    assert "research/dashboard.js" in body


def test_pair_page_links_back_to_its_campaign_dashboard(
    client: Client, admin_user: Any, campaign: Campaign
) -> None:
    pair = Pair.objects.filter(campaign=campaign).first()
    assert pair is not None
    client.force_login(admin_user)

    body = client.get(_pair_url(pair.pk)).content.decode()

    assert f'href="{_dashboard_url(campaign)}"' in body
    assert f'data-pair-url="/api/v1/pairs/{pair.pk}/"' in body


@pytest.mark.parametrize("which", ["dashboard", "pair"])
def test_unknown_ids_are_404_for_researchers(client: Client, researcher: Any, which: str) -> None:
    client.force_login(researcher)
    url = _dashboard_url(Campaign(pk=999_999)) if which == "dashboard" else _pair_url(999_999)

    assert client.get(url).status_code == 404


def test_unknown_ids_are_403_not_404_for_annotators(client: Client, annotator: Any) -> None:
    """An annotator learns nothing about which campaigns or pairs exist."""
    client.force_login(annotator)

    assert client.get(_dashboard_url(Campaign(pk=999_999))).status_code == 403
    assert client.get(_pair_url(999_999)).status_code == 403


@pytest.mark.parametrize(
    ("role", "shown"),
    [("researcher", True), ("admin_user", True), ("annotator", False)],
)
def test_home_links_each_campaign_to_its_dashboard_for_researchers_and_admins(
    request: pytest.FixtureRequest, campaign: Campaign, role: str, shown: bool
) -> None:
    body = _client(request, role).get(reverse("feedback:home")).content.decode()

    assert (f'href="{_dashboard_url(campaign)}"' in body) is shown
