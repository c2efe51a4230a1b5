"""Live updates in a real browser: the labelling page hears of new pairs and progress over
the campaign's WebSocket, reconnects when the socket drops, and polls when it has none.

The socket tests run against daphne (``asgi_server``: HTTP and WebSocket, Redis channel
layer shared with this process); pytest-django's ``live_server`` speaks WSGI only, which makes
it the server on which a socket can never connect. Run on their own (see conftest).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, Route, expect

from feedback import services
from feedback.models import Campaign
from tests.e2e.conftest import AsgiServer
from tests.e2e.pages import PASSWORD, label_page, log_in, off_the_loop, wait_settled

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]

NOTHING_LEFT = "Nothing left to label"


def queue_pairs(campaign: Campaign, count: int) -> None:
    """Queue ``count`` pairs the way an admin's command does; the service announces them to
    the campaign's group after commit (through Redis when the test uses ``asgi_server``)."""

    def queue() -> None:
        assert len(services.pairs_create_random(campaign=campaign, count=count, seed=1)) == count

    off_the_loop(queue)


def label_as(annotator: User, campaign: Campaign, *, exclude: tuple[int, ...] = ()) -> int:
    """``annotator`` leases a pair and answers it; returns the assignment id."""
    assignment = services.assignment_lease_next(
        campaign=campaign, annotator=annotator, exclude_ids=exclude
    )
    assert assignment is not None
    services.judgement_record(
        assignment_id=assignment.pk,
        annotator=annotator,
        answer=services.JudgementInput(
            preference="left", left_desirability="unsure", right_desirability="unsure"
        ),
    )
    return assignment.pk


def mark_document(page: Page) -> None:
    """Tag this document: a reload or navigation would lose the tag."""
    page.evaluate("window.__sameDocument = true")


def assert_same_document(page: Page) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"


def test_a_pair_pushed_over_the_socket_appears_without_reload(
    page: Page,
    asgi_server: AsgiServer,
    make_campaign: Any,
    annotator: User,
    other_annotator: User,
) -> None:
    campaign = make_campaign(pairs=0)
    label_page(page, asgi_server.url, campaign)
    expect(page.get_by_role("heading", name=NOTHING_LEFT)).to_be_visible()
    root = page.locator("#labeller")
    expect(root).to_have_attribute("data-live", "live")
    mark_document(page)

    queue_pairs(campaign, 3)  # two for the page (one prefetched), one for otto
    # Pushed, not polled: with the socket up the page does not poll, and its slow
    # "look again" timer is a minute away.
    expect(root).to_have_attribute("data-state", "ready", timeout=5_000)
    pair = wait_settled(page)
    assert pair["assignment"] > 0 and pair["leftReady"] >= 2
    expect(page.get_by_role("heading", name=NOTHING_LEFT)).to_be_hidden()
    expect(page.locator("#progress")).to_contain_text("campaign: 0 / 3")
    assert_same_document(page)
    assert page.evaluate("window.preflab.feed.polls") == 0

    # Someone else's label: recording it pushes the campaign's progress, and the line follows.
    off_the_loop(lambda: label_as(other_annotator, campaign))
    expect(page.locator("#progress")).to_contain_text("campaign: 1 / 3", timeout=5_000)
    assert_same_document(page)


def test_after_the_socket_drops_the_page_reconnects_and_hears_new_pairs(
    page: Page, asgi_server: AsgiServer, make_campaign: Any, annotator: User
) -> None:
    campaign = make_campaign(pairs=0)
    label_page(page, asgi_server.url, campaign)
    root = page.locator("#labeller")
    expect(root).to_have_attribute("data-live", "live")
    expect(page.get_by_role("heading", name=NOTHING_LEFT)).to_be_visible()
    mark_document(page)

    page.evaluate("window.preflab.feed.socket.close()")  # as a dropped connection would
    expect(root).to_have_attribute("data-live", "polling")
    expect(root).to_have_attribute("data-live", "live", timeout=5_000)  # backoff starts at ~1 s

    queue_pairs(campaign, 1)
    expect(root).to_have_attribute("data-state", "ready", timeout=5_000)
    wait_settled(page)
    assert_same_document(page)


def test_without_a_socket_the_page_polls_for_progress_and_new_pairs(
    page: Page, live_server: Any, make_campaign: Any, annotator: User, other_annotator: User
) -> None:
    campaign = make_campaign(pairs=0)

    def poll_every_second(route: Route) -> None:
        response = route.fetch()
        body = response.text().replace('data-poll-ms="10000"', 'data-poll-ms="1000"')
        route.fulfill(response=response, body=body)

    log_in(page, live_server.url, username=annotator.username, password=PASSWORD)
    label_url = f"{live_server.url}/campaigns/{campaign.pk}/label/"
    page.route(label_url, poll_every_second)  # a redirect's target is not routed: go directly
    page.goto(label_url)
    root = page.locator("#labeller")
    expect(page.get_by_role("heading", name=NOTHING_LEFT)).to_be_visible()
    expect(root).to_have_attribute("data-poll-ms", "1000")
    # The WSGI live server has no WebSocket route: the socket fails and the page polls.
    expect(root).to_have_attribute("data-live", "polling")
    mark_document(page)

    queue_pairs(campaign, 3)  # no socket here: only a poll can notice
    expect(root).to_have_attribute("data-state", "ready", timeout=4_000)
    wait_settled(page)
    expect(page.locator("#progress")).to_contain_text("campaign: 0 / 3", timeout=3_000)

    # Someone else's label shows up at the next poll.
    label_as(other_annotator, campaign)
    expect(page.locator("#progress")).to_contain_text("campaign: 1 / 3", timeout=3_000)
    assert page.evaluate("window.preflab.feed.polls") >= 2
    expect(root).to_have_attribute("data-live", "polling")
    assert_same_document(page)
