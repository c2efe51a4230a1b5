"""The annotator's journey in a real browser: log in, label pairs with the keyboard only,
see the next pair at once, watch two clips locked to the same timestep.

Run on their own (see conftest): ``pytest tests/e2e -m e2e -p no:asyncio``.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, Route, expect

from feedback import services
from feedback.models import Assignment, Campaign, Judgement
from feedback.services import annotation
from tests.e2e.pages import (
    CLOCKS,
    PASSWORD,
    READ_PAIR,
    SAMPLE,
    log_in,
    loop_distance,
    make_clip_campaign,
    wait_settled,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]


class _Alternating:
    """Stands in for the lease's random source so left/right order alternates A-left, B-left."""

    def __init__(self) -> None:
        self._values = itertools.cycle([0.25, 0.75])
        self.calls = 0

    def random(self) -> float:
        self.calls += 1
        return next(self._values)


@pytest.fixture
def alternate_sides(monkeypatch: pytest.MonkeyPatch) -> _Alternating:
    # Left/right is drawn at random per lease; alternating it makes every run exercise both
    # mappings (left is A, left is B) instead of passing by luck on one of them.
    source = _Alternating()
    monkeypatch.setattr(annotation, "random", SimpleNamespace(SystemRandom=lambda: source))
    return source


# --- the journey ------------------------------------------------------------------------------

# (desirability keys pressed in order, preference key). The last desirability key per clip wins.
PLAN = [
    (["1", "9"], "ArrowLeft"),
    (["2"], "ArrowRight"),
    (["8", "3"], "ArrowUp"),
    ([], "ArrowDown"),
    (["2", "1", "0"], "ArrowLeft"),
    (["9", "2"], "ArrowRight"),
]
KEY_DESIRABILITY = {
    "1": ("left", "desirable"),
    "2": ("left", "undesirable"),
    "3": ("left", "unsure"),
    "8": ("right", "desirable"),
    "9": ("right", "undesirable"),
    "0": ("right", "unsure"),
}
KEY_PREFERENCE = {
    "ArrowLeft": "left",
    "ArrowRight": "right",
    "ArrowUp": "equal",
    "ArrowDown": "cant_tell",
}


def test_annotator_labels_every_pair_with_the_keyboard(
    page: Page,
    live_server: Any,
    make_campaign: Callable[..., Campaign],
    annotator: User,
    alternate_sides: _Alternating,
) -> None:
    campaign = make_campaign(pairs=len(PLAN))
    assert campaign.pairs.count() == len(PLAN)

    log_in(page, live_server.url, username=annotator.username, password=PASSWORD)
    row = page.locator(f'tr[data-campaign-id="{campaign.pk}"]')
    expect(row).to_contain_text("0 / 6")
    expect(page.locator(".roles")).to_contain_text("annotator")
    row.get_by_role("link", name="Label").click()
    page.wait_for_url(f"{live_server.url}/campaigns/{campaign.pk}/label/")

    posts: list[tuple[str, Any]] = []  # the labelling requests, in order
    page.on(
        "request",
        lambda r: posts.append((r.url, r.post_data_json))
        if r.method == "POST" and ("/next/" in r.url or "/judgement/" in r.url)
        else None,
    )
    shown: list[dict[str, Any]] = []
    for index, (desirability_keys, preference_key) in enumerate(PLAN):
        pair = wait_settled(page)
        assert pair["assignment"] == pair["hook"] == pair["leftAssignment"]
        assert pair["leftVisible"] and pair["rightVisible"]
        assert pair["assignment"] not in [s["assignment"] for s in shown]
        last = index == len(PLAN) - 1
        assert (pair["prefetched"] is None) == last, (
            "the next pair is leased before this one is answered"
        )
        if not last:
            for video in pair["buffered"]:
                assert video == {
                    "assignment": pair["prefetched"],
                    "readyState": video["readyState"],
                    "hidden": True,
                }
                assert video["readyState"] >= 2, (
                    "the next pair's clips are loaded before it is shown"
                )

        expected = {"left": "unsure", "right": "unsure"}  # the default for every new pair
        for key in desirability_keys:
            page.keyboard.press(key)
            side, value = KEY_DESIRABILITY[key]
            expected[side] = value
        for side in ("left", "right"):
            pressed = page.locator(
                f'[data-action="desirability"][data-side="{side}"][aria-pressed="true"]'
            )
            expect(pressed).to_have_attribute("data-value", expected[side])
        time.sleep(0.2)  # a pair is watched for a moment: elapsed_ms must show it
        page.keyboard.press(preference_key)
        shown.append(
            {**pair, "desirability": expected, "preference": KEY_PREFERENCE[preference_key]}
        )

        if not last:
            # The prefetched pair is on screen as soon as the key is handled, already loaded.
            after = page.evaluate(READ_PAIR)
            assert after["assignment"] == pair["prefetched"] != pair["assignment"]
            assert after["leftReady"] >= 2 and after["rightReady"] >= 2

    expect(page.get_by_role("heading", name="Nothing left to label")).to_be_visible()
    expect(page.locator("#labeller")).to_have_attribute("data-state", "done")
    # One request per label: each answer given with the next pair on screen also leased the
    # pair after it (excluding the one on screen); only the first two leases and the final
    # "anything left?" were requests of their own.
    judgements = [body for url, body in posts if "/judgement/" in url]
    assert len(judgements) == len(PLAN)
    assert [body.get("next") for body in judgements] == [
        {"exclude": [answer["prefetched"]]} for answer in shown[:-1]
    ] + [None]
    first_answer = next(i for i, (url, _) in enumerate(posts) if "/judgement/" in url)
    assert sum("/next/" in url for url, _ in posts[:first_answer]) == 2
    assert sum("/next/" in url for url, _ in posts[first_answer:-1]) == 0
    expect(page.locator("#progress")).to_contain_text("you: 6 labels")
    expect(page.locator("#progress")).to_contain_text("campaign: 6 / 6")

    # Every answer is stored once, mapped from what was on screen onto the pair's A/B order.
    assert Judgement.objects.filter(annotator=annotator).count() == len(PLAN)
    orientations = set()
    for answer in shown:
        judgement = Judgement.objects.select_related("pair").get(assignment_id=answer["assignment"])
        pair = judgement.pair
        assert {answer["left"], answer["right"]} == {pair.segment_a_id, pair.segment_b_id}
        left_is_a = answer["left"] == pair.segment_a_id
        orientations.add(left_is_a)
        assert judgement.left_is_a is left_is_a
        expected_preference = {
            "left": "a" if left_is_a else "b",
            "right": "b" if left_is_a else "a",
        }.get(answer["preference"], answer["preference"])
        assert judgement.preference == expected_preference, answer
        a_side, b_side = ("left", "right") if left_is_a else ("right", "left")
        desirability = answer["desirability"]
        assert (judgement.desirability_a, judgement.desirability_b) == (
            desirability[a_side],
            desirability[b_side],
        )
        assert judgement.elapsed_ms is not None and 150 <= judgement.elapsed_ms < 30_000
    # One draw per request that may lease a new pair: the order is a parameter of the leasing
    # statement, so the requests answered 204 after the last pair drew one too.
    assert alternate_sides.calls >= len(PLAN), "every lease drew its left/right order"
    assert orientations == {True, False}, "both left/right orders were labelled"


def test_page_says_so_when_nothing_is_left(
    page: Page, live_server: Any, make_campaign: Callable[..., Campaign], annotator: User
) -> None:
    campaign = make_campaign(pairs=0)
    path = f"/campaigns/{campaign.pk}/label/"
    log_in(page, live_server.url, username=annotator.username, password=PASSWORD, next_path=path)
    expect(page.get_by_role("heading", name="Nothing left to label")).to_be_visible()
    expect(page.get_by_role("button", name="Left is better")).to_be_hidden()
    assert not Assignment.objects.exists()


def test_buttons_do_what_the_keys_do(
    page: Page, live_server: Any, make_campaign: Callable[..., Campaign], annotator: User
) -> None:
    campaign = make_campaign(pairs=1)
    path = f"/campaigns/{campaign.pk}/label/"
    log_in(page, live_server.url, username=annotator.username, password=PASSWORD, next_path=path)
    pair = wait_settled(page)

    left = page.get_by_role("group", name="Left clip: desirable?")
    right = page.get_by_role("group", name="Right clip: desirable?")
    left.get_by_role("button", name="Undesirable").click()
    right.get_by_role("button", name=re.compile(r"^\d Desirable$")).click()
    expect(left.get_by_role("button", name="Undesirable")).to_have_attribute("aria-pressed", "true")
    expect(left.get_by_role("button", name="Unsure")).to_have_attribute("aria-pressed", "false")

    page.get_by_role("button", name="Pause").click()
    assert page.evaluate(CLOCKS)["leftPaused"]
    # Space with the focus still on that button toggles once (it must not also "press" it).
    page.keyboard.press("Space")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    assert not page.evaluate(CLOCKS)["leftPaused"]

    page.get_by_role("button", name="Right is better").click()
    expect(page.get_by_role("heading", name="Nothing left to label")).to_be_visible()
    judgement = Judgement.objects.get(assignment_id=pair["assignment"])
    left_is_a = pair["left"] == judgement.pair.segment_a_id
    assert judgement.preference == ("b" if left_is_a else "a")
    assert (judgement.desirability_a, judgement.desirability_b) == (
        ("undesirable", "desirable") if left_is_a else ("desirable", "undesirable")
    )


def test_an_answer_given_before_the_prefetch_arrives_waits_for_it(
    page: Page, live_server: Any, make_campaign: Callable[..., Campaign], annotator: User
) -> None:
    campaign = make_campaign(pairs=3)
    asked: list[list[int]] = []  # the `exclude` list of every lease request, in order
    held: list[Route] = []

    def hold_the_prefetch(route: Route) -> None:
        asked.append(route.request.post_data_json["exclude"])
        if len(asked) == 2:
            held.append(route)  # a slow network: the prefetch is still in flight
        else:
            route.continue_()

    page.route("**/api/v1/campaigns/*/next/", hold_the_prefetch)
    path = f"/campaigns/{campaign.pk}/label/"
    log_in(page, live_server.url, username=annotator.username, password=PASSWORD, next_path=path)
    expect(page.locator("#labeller")).to_have_attribute("data-prefetch", "loading")
    first = page.evaluate(READ_PAIR)
    assert asked == [[], [first["assignment"]]]

    page.keyboard.press("ArrowUp")
    wait_until(lambda: Judgement.objects.filter(assignment_id=first["assignment"]).exists())
    assert page.evaluate(READ_PAIR)["assignment"] == first["assignment"]
    held[0].continue_()

    second = wait_settled(page)
    assert second["assignment"] != first["assignment"]
    # The page showed the lease it had asked for, instead of asking again from scratch.
    assert asked == [[], [first["assignment"]], [second["assignment"]]]
    assert Judgement.objects.get(assignment_id=first["assignment"]).preference == "equal"


def test_an_expired_lease_taken_by_someone_else_shows_why_and_moves_on(
    page: Page,
    live_server: Any,
    make_campaign: Callable[..., Campaign],
    annotator: User,
    other_annotator: User,
) -> None:
    # Two pairs: the page holds both (one on screen, one prefetched), so the lapsed one is
    # the only pair the other annotator can be given.
    campaign = make_campaign(pairs=2)
    path = f"/campaigns/{campaign.pk}/label/"
    log_in(page, live_server.url, username=annotator.username, password=PASSWORD, next_path=path)
    first = wait_settled(page)

    # The lease lapses while the annotator watches, and the pair goes to someone else.
    now = timezone.now()
    lapsed = Assignment.objects.get(pk=first["assignment"])
    Assignment.objects.filter(pk=lapsed.pk).update(
        leased_at=now - timedelta(hours=1), expires_at=now - timedelta(minutes=1)
    )
    taken = services.assignment_lease_next(campaign=campaign, annotator=other_annotator)
    assert taken is not None and taken.pair_id == lapsed.pair_id

    page.keyboard.press("ArrowLeft")
    error = page.get_by_role("alert")
    expect(error).to_be_visible()
    expect(error).to_contain_text("not needed")
    assert page.evaluate("window.preflab.state.lastSave.status") == 410
    detail = page.evaluate("window.preflab.state.lastSave.detail")
    assert detail and detail in error.inner_text()  # the server's own words
    second = wait_settled(page)
    assert second["assignment"] == first["prefetched"]
    assert not Judgement.objects.filter(assignment_id=first["assignment"]).exists()

    # The next answer goes through and clears the message.
    page.keyboard.press("ArrowRight")
    expect(error).to_be_hidden()
    # The lapsed pair is someone else's now: nothing is left for this annotator.
    expect(page.get_by_role("heading", name="Nothing left to label")).to_be_visible()
    assert Judgement.objects.filter(
        assignment_id=second["assignment"], annotator=annotator
    ).exists()


# --- the clock --------------------------------------------------------------------------------


def test_both_clips_stay_on_the_same_timestep(
    page: Page, live_server: Any, annotator: User
) -> None:
    campaign = make_clip_campaign(lengths=(90, 90), fps=30)  # two 3-second clips
    path = f"/campaigns/{campaign.pk}/label/"
    log_in(page, live_server.url, username=annotator.username, password=PASSWORD, next_path=path)
    wait_settled(page)
    frame = 1 / 30

    def assert_locked(samples: list[list[float]], period: float) -> None:
        worst = max(loop_distance(left, right, period) for left, right in samples)
        assert worst <= frame, (
            f"clips drifted {worst * 1000:.0f} ms apart (one frame is {frame * 1000:.0f} ms)"
        )

    time.sleep(1.0)
    clocks = page.evaluate(CLOCKS)
    assert clocks["fps"] == 30
    assert not clocks["leftPaused"] and not clocks["rightPaused"]
    assert abs(clocks["left"] - clocks["right"]) <= frame
    samples = page.evaluate(SAMPLE, 1200)
    assert samples[-1][0] != samples[0][0], "the clips play"
    assert_locked(samples, clocks["leftDuration"])

    page.keyboard.press("Space")
    expect(page.get_by_role("button", name="Play")).to_be_visible()
    paused = page.evaluate(CLOCKS)
    assert paused["leftPaused"] and paused["rightPaused"]
    assert abs(paused["left"] - paused["right"]) <= frame
    time.sleep(0.3)
    still = page.evaluate(CLOCKS)
    assert (still["left"], still["right"]) == (paused["left"], paused["right"]), (
        "paused clips stay put"
    )

    page.keyboard.press("Space")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    time.sleep(0.5)
    resumed = page.evaluate(CLOCKS)
    assert not resumed["leftPaused"] and not resumed["rightPaused"]
    assert abs(resumed["left"] - resumed["right"]) <= frame
    assert_locked(page.evaluate(SAMPLE, 800), clocks["leftDuration"])


def test_the_shorter_clip_holds_its_last_frame_until_the_loop_restarts(
    page: Page, live_server: Any, annotator: User
) -> None:
    campaign = make_clip_campaign(lengths=(60, 30), fps=30, name="uneven")  # 2 s and 1 s
    path = f"/campaigns/{campaign.pk}/label/"
    log_in(page, live_server.url, username=annotator.username, password=PASSWORD, next_path=path)
    wait_settled(page)
    clocks = page.evaluate(CLOCKS)
    long_is_left = clocks["leftDuration"] > clocks["rightDuration"]
    long_duration = max(clocks["leftDuration"], clocks["rightDuration"])
    short_duration = min(clocks["leftDuration"], clocks["rightDuration"])
    assert long_duration == pytest.approx(2.0, abs=0.05) and short_duration == pytest.approx(
        1.0, abs=0.05
    )
    frame = 1 / 30

    samples = page.evaluate(SAMPLE, 2600)  # more than one whole loop
    held = locked = 0
    for left, right in samples:
        long_t, short_t = (left, right) if long_is_left else (right, left)
        if long_t < short_duration - frame:
            # Both clips still running: same timestep (the long clip may have just wrapped).
            assert loop_distance(long_t, short_t, long_duration) <= frame, (long_t, short_t)
            locked += 1
        elif long_t > short_duration + frame:
            # The short clip is over: it shows its last frame while the long one plays on.
            assert short_t >= short_duration - frame, (long_t, short_t)
            held += 1
    assert locked > 10 and held > 10, "the samples cover both phases of the loop"


# --- done for today ---------------------------------------------------------------------------


def test_done_for_today_stops_leasing_and_sums_up_the_session(
    page: Page, live_server: Any, make_campaign: Callable[..., Campaign], annotator: User
) -> None:
    campaign = make_campaign(pairs=6)
    leases: list[str] = []
    page.on(
        "request",
        lambda request: leases.append(request.url) if request.url.endswith("/next/") else None,
    )
    path = f"/campaigns/{campaign.pk}/label/"
    log_in(page, live_server.url, username=annotator.username, password=PASSWORD, next_path=path)

    plan = [(["1", "9"], "ArrowLeft"), (["8"], "ArrowLeft"), ([], "ArrowUp"), (["2"], "ArrowDown")]
    for desirability_keys, preference_key in plan:
        wait_settled(page)
        for key in desirability_keys:
            page.keyboard.press(key)
        time.sleep(0.25)
        page.keyboard.press(preference_key)
    on_screen = wait_settled(page)
    wait_until(lambda: Judgement.objects.filter(annotator=annotator).count() == len(plan))
    held = set(
        Assignment.objects.filter(annotator=annotator, completed_at__isnull=True).values_list(
            "pk", flat=True
        )
    )
    assert held == {on_screen["assignment"], on_screen["prefetched"]}
    asked = len(leases)

    page.keyboard.press("d")
    summary = page.get_by_role("region", name="Done for today")
    expect(summary).to_be_visible()
    expect(page.locator("#labeller")).to_have_attribute("data-state", "summary")
    expect(page.locator("#workspace")).to_be_hidden()
    expect(page.get_by_role("button", name="Done for today")).to_be_hidden()
    assert page.evaluate(
        "[...document.querySelectorAll('#labeller video')].every((v) => v.paused && !v.src)"
    ), "the clips are put away"

    def fact(key: str) -> str:
        return page.locator(f'[data-summary="{key}"]').inner_text()

    expect(page.locator('[data-summary="campaign"]')).to_have_text("4 / 6")
    assert fact("pairs") == "4"
    assert re.fullmatch(r"\d+ s", fact("time")), fact("time")
    median = float(fact("median").removesuffix(" s"))
    assert 0.2 <= median <= 10, median
    answers = {p: fact(f"prefer-{p}") for p in ("left", "right", "equal", "cant_tell")}
    assert answers == {"left": "2", "right": "0", "equal": "1", "cant_tell": "1"}
    clips = {v: fact(f"clips-{v}") for v in ("desirable", "undesirable", "unsure")}
    assert clips == {"desirable": "2", "undesirable": "2", "unsure": "4"}
    assert fact("mine") == "4"

    # Stopped: no more leases asked for, answer keys do nothing, and nothing was released.
    page.keyboard.press("ArrowLeft")
    time.sleep(0.5)
    assert len(leases) == asked
    assert Judgement.objects.filter(annotator=annotator).count() == len(plan)
    still_held = Assignment.objects.filter(pk__in=held, completed_at__isnull=True)
    assert still_held.count() == 2, "leases are left to expire, not released"

    # Keep labelling: the open lease comes back first.
    summary.get_by_role("button", name="Keep labelling").click()
    again = wait_settled(page)
    assert again["assignment"] in held
    expect(summary).to_be_hidden()
    expect(page.get_by_role("button", name="Done for today")).to_be_visible()
