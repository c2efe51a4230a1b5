"""The practice round in a real browser: offered before an annotator's first label, answered
with the labelling keys, checked at once and never stored; and on demand afterwards.

Run on their own (see conftest): ``pytest tests/e2e -m e2e -p no:asyncio``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from feedback import services
from feedback.models import Assignment, Campaign, Judgement
from feedback.services.annotation import JudgementInput
from tests.e2e.pages import (
    READ_PRACTICE,
    label_page,
    make_practice_campaign,
    practice_keys,
    wait_settled,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]


def test_a_first_time_annotator_practises_before_the_first_real_pair(
    page: Page, live_server: Any, make_campaign: Callable[..., Campaign], annotator: User
) -> None:
    campaign = make_practice_campaign(make_campaign, practice=2, pairs=2)
    Campaign.objects.filter(pk=campaign.pk).update(instructions="Prefer the livelier clip.")
    label_page(page, live_server.url, campaign)

    root = page.locator("#labeller")
    practice = page.locator("#practice")
    expect(root).to_have_attribute("data-state", "practice")
    expect(practice.get_by_role("heading", name="Practice round (2 pairs)")).to_be_visible()
    expect(practice).to_contain_text("Pair 1 of 2")
    expect(page.locator(".instructions")).to_have_attribute("open", "")  # instructions first
    expect(page.get_by_role("button", name="Done for today")).to_be_hidden()
    expect(page.get_by_role("button", name="Practice again")).to_be_hidden()  # not during a round
    expect(page.get_by_role("button", name="Left is better")).to_be_enabled()

    # First pair: the right answer, by keyboard.
    right_key, _ = practice_keys(page)
    better = "left" if right_key == "ArrowLeft" else "right"
    page.keyboard.press(right_key)
    verdict = practice.locator('[data-practice-part="verdict"]')
    message = practice.locator('[data-practice-part="message"]')
    expect(message).to_have_text(f"Right: the {better} clip is the better one.")
    expect(verdict.get_by_role("button")).to_have_text("Enter Next")
    expect(verdict).to_have_attribute("data-correct", "true")
    expect(root).to_have_attribute("data-practice-better", better)
    expect(page.get_by_role("button", name="Left is better")).to_be_disabled()
    page.keyboard.press(right_key)  # a second answer to the same pair is not taken
    expect(root).to_have_attribute("data-practice", "verdict")
    first = page.evaluate(READ_PRACTICE)

    # Enter: the second pair (already loaded behind the first); a wrong answer this time.
    page.keyboard.press("Enter")
    expect(practice).to_contain_text("Pair 2 of 2")
    expect(root).to_have_attribute("data-practice", "pair")
    expect(root).to_have_attribute("data-practice-better", "")
    right_key, wrong_key = practice_keys(page)
    second = page.evaluate(READ_PRACTICE)
    assert {second["left"], second["right"]} != {first["left"], first["right"]}
    better = "left" if right_key == "ArrowLeft" else "right"
    page.keyboard.press(wrong_key)
    expect(message).to_contain_text(f"Not quite: the {better} clip is the better one here.")
    expect(verdict).to_have_attribute("data-correct", "false")
    expect(verdict.get_by_role("button")).to_have_text("Enter See your score")

    # The score, then Enter starts labelling. Practice leased and stored nothing.
    page.keyboard.press("Enter")
    summary = practice.locator('[data-practice-part="summary"]')
    expect(summary).to_contain_text("1 of 2 right.")
    expect(summary.get_by_role("button", name="Practice again")).to_be_visible()
    expect(page.locator("#workspace")).to_be_hidden()
    assert not Assignment.objects.exists()
    assert not Judgement.objects.exists()
    page.keyboard.press("Enter")

    pair = wait_settled(page)
    expect(practice).to_be_hidden()
    expect(root).to_have_attribute("data-practice", "")
    expect(page.get_by_role("button", name="Done for today")).to_be_visible()
    head = page.locator(".head-actions")
    expect(head.get_by_role("button", name="Practice again")).to_be_visible()
    page.keyboard.press("ArrowUp")
    wait_until(lambda: Judgement.objects.exists())
    expect(page.locator("#progress")).to_contain_text("you: 1 label")
    judgement = Judgement.objects.get()  # exactly one: the real pair's
    assert judgement.assignment_id == pair["assignment"]
    assert judgement.annotator == annotator and not judgement.pair.is_practice
    assert judgement.preference == "equal"

    # Finished: a reload before the next label does not offer the round again.
    page.reload()
    wait_settled(page)
    expect(practice).to_be_hidden()


def test_an_annotator_with_labels_goes_straight_to_labelling_and_may_practise_again(
    page: Page, live_server: Any, make_campaign: Callable[..., Campaign], annotator: User
) -> None:
    campaign = make_practice_campaign(make_campaign, practice=2, pairs=3)
    lease = services.assignment_lease_next(campaign=campaign, annotator=annotator)
    assert lease is not None
    services.judgement_record(
        assignment_id=lease.pk,
        annotator=annotator,
        answer=JudgementInput(
            preference="left", left_desirability="unsure", right_desirability="unsure"
        ),
    )
    label_page(page, live_server.url, campaign)

    pair = wait_settled(page)
    practice = page.locator("#practice")
    expect(practice).to_be_hidden()
    expect(page.locator("#labeller")).to_have_attribute("data-state", "ready")

    # On demand: the round replaces the pair; skipping it brings the same lease back.
    page.locator(".head-actions").get_by_role("button", name="Practice again").click()
    expect(page.locator("#labeller")).to_have_attribute("data-state", "practice")
    expect(practice.get_by_role("heading", name="Practice round (2 pairs)")).to_be_visible()
    page.wait_for_function(f"({READ_PRACTICE})().loaded", timeout=10_000)
    page.keyboard.press("ArrowDown")
    expect(practice.locator('[data-practice-part="verdict"]')).to_contain_text("Not quite")
    practice.get_by_role("button", name="Skip practice").click()

    back = wait_settled(page)
    assert back["assignment"] == pair["assignment"], "the open lease comes back first"
    expect(practice).to_be_hidden()
    assert Judgement.objects.count() == 1
