"""The researcher's pages in a real browser: the campaign dashboard draws its statistics as
SVG, lists the annotators with their flags, excludes and re-includes one through the toggle,
pages through the pairs and follows live updates; the drill-down shows both clips and every
vote.

Judgements are made through the services (``assignment_lease_next`` + ``judgement_record``),
from a thread of their own: sync Playwright keeps an event loop in the test's thread, where
the after-commit live-update broadcast cannot run. Run on their own (see conftest):

    PREFLAB_MODE=test python -m pytest tests/e2e -m e2e -q -p no:asyncio -k research
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from playwright.sync_api import Page, Route, expect

from feedback import services
from feedback.models import AnnotatorExclusion, Campaign, Judgement, Pair
from tests.e2e.conftest import AsgiServer
from tests.e2e.pages import log_in, off_the_loop

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]

RESEARCHER_PASSWORD = "rita-pass-123"

# Who answers what, in screen terms, and how long they took (ms). tess answers in half a
# second, under the campaign's plausible minimum (1.5 s), so she is flagged "too fast".
ANSWERS: dict[str, list[tuple[str, int]]] = {
    "annie": [("left", 4000), ("left", 5200), ("right", 3900), ("equal", 6100)],
    "otto": [("left", 3000), ("right", 2800), ("right", 4100), ("cant_tell", 3500)],
    "tess": [("left", 500), ("left", 400)],
}


def label_as(
    annotator: User, campaign: Campaign, *, preference: str = "left", elapsed_ms: int = 3000
) -> None:
    """``annotator`` leases the next pair and answers it (left clip desirable, right unsure)."""
    assignment = services.assignment_lease_next(campaign=campaign, annotator=annotator)
    assert assignment is not None, f"no pair left for {annotator}"
    services.judgement_record(
        assignment_id=assignment.pk,
        annotator=annotator,
        answer=services.JudgementInput(
            preference=preference,
            left_desirability="desirable",
            right_desirability="unsure",
            elapsed_ms=elapsed_ms,
        ),
    )


def make_annotator(username: str) -> User:
    user = User.objects.create_user(username=username, password=f"{username}-pass-123")
    user.groups.add(Group.objects.get_or_create(name="annotator")[0])
    return user


@pytest.fixture
def cast(annotator: User, other_annotator: User, researcher: User) -> dict[str, User]:
    return {"annie": annotator, "otto": other_annotator, "tess": make_annotator("tess")}


@pytest.fixture
def labelled(make_campaign: Any, cast: dict[str, User]) -> Campaign:
    """Four pairs wanting three labels each; annie and otto answered all four, tess two."""
    campaign = make_campaign(name="Dashboard toy", pairs=4, overlap=3)

    def answer_all() -> None:
        for username, answers in ANSWERS.items():
            for preference, elapsed_ms in answers:
                label_as(cast[username], campaign, preference=preference, elapsed_ms=elapsed_ms)

    off_the_loop(answer_all)
    assert Judgement.objects.filter(pair__campaign=campaign).count() == 10
    return campaign


def open_dashboard(page: Page, base_url: str, campaign: Campaign) -> None:
    path = f"/research/campaigns/{campaign.pk}/"
    log_in(page, base_url, username="rita", password=RESEARCHER_PASSWORD, next_path=path)
    expect(page.locator("#dashboard")).to_have_attribute("data-state", "ready", timeout=10_000)


def bar_values(page: Page, chart: str) -> dict[str, float | None]:
    return page.evaluate(
        """(chart) => Object.fromEntries(
             [...document.querySelectorAll(`#${chart} rect.bar`)].map((bar) => [
               bar.dataset.key, bar.dataset.value === "" ? null : Number(bar.dataset.value),
             ]))""",
        chart,
    )


def table_rows(page: Page) -> list[dict[str, str]]:
    return page.evaluate(
        """() => [...document.querySelectorAll("#annotators tbody tr")].map((tr) => ({
             username: tr.dataset.username,
             excluded: tr.dataset.excluded,
             labels: tr.querySelector('[data-column="labels"]').textContent,
             flags: [...tr.querySelectorAll("[data-flag]")].map((b) => b.dataset.flag).join(","),
             toggle: tr.querySelector('[data-action="toggle-exclusion"]').textContent,
           }))"""
    )


def hours_spanned(rows: list[dict[str, Any]]) -> int:
    """How many hourly points the chart draws: every hour from the first label's to the last's."""
    times = sorted(datetime.fromisoformat(row["t"]) for row in rows)
    return int((times[-1] - times[0]) / timedelta(hours=1)) + 1


def test_the_dashboard_draws_every_statistic_of_the_campaign(
    page: Page, live_server: Any, labelled: Campaign
) -> None:
    open_dashboard(page, live_server.url, labelled)
    judgements = Judgement.objects.filter(pair__campaign=labelled)

    # Header: 10 of 4 × 3 = 12 labels.
    expect(page.locator('#progress [data-progress="done"]')).to_have_text("10")
    expect(page.locator('#progress [data-progress="wanted"]')).to_have_text("12")
    expect(page.get_by_role("heading", name="Dashboard toy")).to_be_visible()

    # Labels over time: one point per hour from the first label to the last, summing to all.
    stats = page.request.get(f"{live_server.url}/api/v1/campaigns/{labelled.pk}/stats/").json()
    points = page.locator("#chart-over-time svg circle.point")
    expect(points).to_have_count(hours_spanned(stats["labels_over_time"]))
    assert (
        sum(float(v) for v in points.evaluate_all("(ps) => ps.map((p) => p.dataset.value)")) == 10
    )
    expect(page.locator("#chart-over-time svg path.area")).to_have_count(1)

    # Throughput: one bar per annotator.
    assert bar_values(page, "chart-labels") == {"annie": 4, "otto": 4, "tess": 2}
    expect(page.locator("#chart-rate svg rect.bar")).to_have_count(3)
    # No gold pairs in this campaign: the gold chart says so instead of drawing empty bars.
    expect(page.locator("#chart-gold svg")).to_have_count(0)
    expect(page.locator("#chart-gold")).to_contain_text("gold rate 0")

    # Answers: the distributions match what is stored (A/B depends on the random sides).
    preferences = Counter(judgements.values_list("preference", flat=True))
    assert bar_values(page, "chart-preferences") == {
        key: preferences.get(key, 0) for key in ("a", "b", "equal", "cant_tell")
    }
    # Every answer marked the left clip desirable and the right one unsure.
    assert bar_values(page, "chart-desirability") == {
        "desirable": 10,
        "undesirable": 0,
        "unsure": 10,
    }

    # Position bias among the 8 decisive answers (5 on the left, 3 on the right, as given on
    # screen): z = (5 − 8/2) / √(8/4).
    parts = page.locator("#chart-bias svg rect.part")
    expect(parts).to_have_count(2)
    assert parts.evaluate_all("(ps) => ps.map((p) => Number(p.dataset.value))") == [5, 3]
    expect(page.locator('[data-stat="left-rate"]')).to_have_text("63%")
    expect(page.locator('[data-stat="left-z"]')).to_have_text("0.71")

    # Agreement: α as a number and a 3 × 3 heat map whose six off-diagonal cells are shaded.
    alpha = stats["agreement"]["alpha"]
    # (Compared as numbers: JavaScript and Python round a half at the third decimal differently.)
    shown_alpha = page.locator('[data-stat="alpha"]').text_content()
    assert alpha is not None and shown_alpha is not None and abs(float(shown_alpha) - alpha) < 0.001
    heat = page.locator("#chart-pairwise table.heatmap")
    expect(heat.locator("tbody tr")).to_have_count(3)
    expect(heat.locator("td.shaded")).to_have_count(6)

    # The annotator table: everyone with their label counts; tess is flagged too fast.
    rows = {row["username"]: row for row in table_rows(page)}
    assert {name: row["labels"] for name, row in rows.items()} == {
        "annie": "4",
        "otto": "4",
        "tess": "2",
    }
    assert rows["tess"]["flags"] == "too_fast"
    assert rows["annie"]["flags"] == rows["otto"]["flags"] == ""
    expect(page.locator('#annotators tr[data-username="tess"] .badge-flag')).to_have_text(
        "too fast"
    )

    # The pairs table lists the four pairs, each linking to its drill-down.
    links = page.locator("#pairs tbody a")
    expect(links).to_have_count(4)
    expect(page.locator('[data-pairs="range"]')).to_have_text("pairs 1–4 of 4")


def test_the_annotator_table_sorts_by_any_column(
    page: Page, live_server: Any, labelled: Campaign
) -> None:
    open_dashboard(page, live_server.url, labelled)

    def names() -> list[str]:
        return [row["username"] for row in table_rows(page)]

    page.get_by_role("button", name="Annotator", exact=True).click()
    assert names() == ["annie", "otto", "tess"]
    expect(page.locator('#annotators th[data-key="username"]')).to_have_attribute(
        "aria-sort", "ascending"
    )
    page.get_by_role("button", name="Annotator", exact=True).click()
    assert names() == ["tess", "otto", "annie"]

    # Median time, fastest first on the second click: tess (0.45 s), otto (3.25 s), annie (4.6 s).
    page.get_by_role("button", name="Median time").click()
    assert names() == ["annie", "otto", "tess"]
    page.get_by_role("button", name="Median time").click()
    assert names() == ["tess", "otto", "annie"]
    expect(page.locator('#annotators th[data-key="median_ms"]')).to_have_attribute(
        "aria-sort", "ascending"
    )


def test_excluding_an_annotator_updates_the_table_the_statistics_and_the_database(
    page: Page, live_server: Any, labelled: Campaign, cast: dict[str, User]
) -> None:
    open_dashboard(page, live_server.url, labelled)
    otto = page.locator('#annotators tr[data-username="otto"]')
    refreshes = int(page.locator("#dashboard").get_attribute("data-refreshes") or 0)

    otto.get_by_role("button", name="Exclude otto's labels").click()

    expect(otto).to_have_attribute("data-excluded", "true")
    expect(otto.locator('[data-action="toggle-exclusion"]')).to_have_text("Include")
    expect(otto.locator(".badge-excluded")).to_have_text("excluded")
    exclusion = AnnotatorExclusion.objects.get(campaign=labelled, annotator=cast["otto"])
    assert "dashboard" in exclusion.reason
    assert exclusion.excluded_by is not None and exclusion.excluded_by.username == "rita"
    assert int(page.locator("#dashboard").get_attribute("data-refreshes") or 0) > refreshes
    # The statistics were re-read: otto's votes left the agreement heat map and the answers.
    expect(page.locator("#chart-pairwise td.shaded")).to_have_count(2)
    kept = Counter(
        Judgement.objects.filter(pair__campaign=labelled)
        .exclude(annotator=cast["otto"])
        .values_list("preference", flat=True)
    )
    assert bar_values(page, "chart-preferences") == {
        key: kept.get(key, 0) for key in ("a", "b", "equal", "cant_tell")
    }
    # …but he keeps his row, his count and his labels.
    assert {row["username"]: row["labels"] for row in table_rows(page)}["otto"] == "4"
    assert Judgement.objects.filter(annotator=cast["otto"]).count() == 4
    stats = page.request.get(f"{live_server.url}/api/v1/campaigns/{labelled.pk}/stats/").json()
    assert {a["username"]: a["excluded"] for a in stats["annotators"]} == {
        "annie": False,
        "otto": True,
        "tess": False,
    }

    otto.get_by_role("button", name="Include otto's labels").click()

    expect(otto).to_have_attribute("data-excluded", "false")
    expect(otto.locator('[data-action="toggle-exclusion"]')).to_have_text("Exclude")
    expect(page.locator("#chart-pairwise td.shaded")).to_have_count(6)
    assert not AnnotatorExclusion.objects.filter(campaign=labelled, annotator=cast["otto"]).exists()


def test_the_drill_down_shows_both_clips_and_every_vote(
    page: Page, live_server: Any, labelled: Campaign
) -> None:
    open_dashboard(page, live_server.url, labelled)
    # The first pair was answered by all three annotators.
    pair = (
        Pair.objects.filter(campaign=labelled)
        .order_by("-priority", "id")
        .select_related("segment_a", "segment_b")
        .first()
    )
    assert pair is not None

    page.locator(f'#pairs tr[data-pair-id="{pair.pk}"] a').click()

    page.wait_for_url(f"{live_server.url}/research/pairs/{pair.pk}/")
    root = page.locator("#pair-detail")
    expect(root).to_have_attribute("data-state", "ready")
    expect(page.get_by_role("heading", name=f"Pair {pair.pk}")).to_be_visible()
    expect(page.get_by_role("link", name="Dashboard toy")).to_have_attribute(
        "href", f"/research/campaigns/{labelled.pk}/"
    )

    votes = list(
        Judgement.objects.filter(pair=pair).select_related("annotator").order_by("created_at", "id")
    )
    assert [v.annotator.username for v in votes] == ["annie", "otto", "tess"]
    rows = page.locator("#votes tbody tr")
    expect(rows).to_have_count(3)
    shown = rows.evaluate_all("(rs) => rs.map((r) => [r.dataset.annotator, r.dataset.preference])")
    assert shown == [[v.annotator.username, v.preference] for v in votes]
    expect(rows.nth(2).locator("td").nth(4)).to_have_text("0.5 s")  # tess's time

    # Both clips, side by side and playing, with their segments' facts and true returns.
    for side, segment in (("a", pair.segment_a), ("b", pair.segment_b)):
        figure = page.locator(f'[data-segment="{side}"]')
        expect(figure).to_have_attribute("data-segment-id", str(segment.pk))
        page.wait_for_function(
            "(side) => document.querySelector(`[data-segment='${side}'] video`).readyState >= 2",
            arg=side,
        )
        assert segment.true_return is not None
        expect(figure.locator('[data-fact="true-return"]')).to_have_text(
            f"{segment.true_return:.3f}"
        )
    boxes = [page.locator(f'[data-segment="{side}"] video').bounding_box() for side in "ab"]
    assert (
        boxes[0] and boxes[1] and boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"]
    )  # side by side
    expect(page.locator('[data-pair="gold"]')).to_be_hidden()


def test_gold_pairs_show_their_answer_and_each_annotators_gold_accuracy(
    page: Page, live_server: Any, labelled: Campaign
) -> None:
    # Make the first two pairs (answered by all three) gold after the fact, with A the answer.
    gold_ids = list(
        Pair.objects.filter(campaign=labelled)
        .order_by("-priority", "id")
        .values_list("id", flat=True)[:2]
    )
    Pair.objects.filter(pk__in=gold_ids).update(is_gold=True, gold_preference="a")
    votes = Judgement.objects.filter(pair_id__in=gold_ids).values_list(
        "annotator__username", "preference"
    )
    right: Counter[str] = Counter(name for name, preference in votes if preference == "a")

    open_dashboard(page, live_server.url, labelled)

    assert bar_values(page, "chart-gold") == {
        name: right[name] / 2 for name in ("annie", "otto", "tess")
    }
    expect(page.locator("#chart-gold svg line.reference")).to_have_count(1)  # chance, 50%
    expect(page.locator(f'#pairs tr[data-pair-id="{gold_ids[0]}"]')).to_contain_text("gold")

    page.goto(f"{live_server.url}/research/pairs/{gold_ids[0]}/")
    expect(page.locator('[data-pair="gold"]')).to_have_text(
        "Gold answer: A is better (by true return)."
    )
    expect(page.locator('[data-pair="facts"]')).to_contain_text("gold pair")


def test_the_pairs_table_pages_fifty_at_a_time(
    page: Page, live_server: Any, make_campaign: Any, researcher: User
) -> None:
    # 6 trajectories × 2 segments = 12 segments, enough for 66 distinct pairs.
    campaign = make_campaign(name="Many pairs", n_trajectories=6, pairs=55)
    open_dashboard(page, live_server.url, campaign)
    rows = page.locator("#pairs tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator('[data-pairs="range"]')).to_have_text("pairs 1–50 of 55")
    previous = page.get_by_role("button", name="‹ Previous")
    expect(previous).to_be_disabled()

    page.get_by_role("button", name="Next ›").click()

    expect(rows).to_have_count(5)
    expect(page.locator('[data-pairs="range"]')).to_have_text("pairs 51–55 of 55")
    expect(page.get_by_role("button", name="Next ›")).to_be_disabled()
    previous.click()
    expect(rows).to_have_count(50)
    # The empty campaign's charts say there is nothing yet instead of failing.
    expect(page.locator("#chart-over-time")).to_contain_text("No labels yet.")
    expect(page.locator('[data-empty="annotators"]')).to_be_visible()


# --- live updates -------------------------------------------------------------------------------


def mark_document(page: Page) -> None:
    page.evaluate("window.__sameDocument = true")


def assert_same_document(page: Page) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"


def test_a_new_judgement_reaches_the_dashboard_over_the_socket_without_reload(
    page: Page, asgi_server: AsgiServer, labelled: Campaign, cast: dict[str, User]
) -> None:
    open_dashboard(page, asgi_server.url, labelled)
    root = page.locator("#dashboard")
    expect(root).to_have_attribute("data-live", "live")
    expect(page.locator('#progress [data-progress="done"]')).to_have_text("10")
    tess = page.locator('#annotators tr[data-username="tess"] [data-column="labels"]')
    expect(tess).to_have_text("2")
    mark_document(page)

    off_the_loop(lambda: label_as(cast["tess"], labelled, preference="right", elapsed_ms=2500))

    expect(page.locator('#progress [data-progress="done"]')).to_have_text("11", timeout=5_000)
    # …and the statistics were re-read: tess's count, the charts and the pairs' votes follow.
    expect(tess).to_have_text("3", timeout=5_000)
    assert bar_values(page, "chart-labels")["tess"] == 3
    assert page.evaluate("window.preflabResearch.feed.polls") == 0  # pushed, not polled
    assert_same_document(page)


def test_without_a_socket_the_dashboard_polls(
    page: Page, live_server: Any, labelled: Campaign, cast: dict[str, User]
) -> None:
    def poll_every_second(route: Route) -> None:
        response = route.fetch()
        body = response.text().replace('data-poll-ms="10000"', 'data-poll-ms="1000"')
        route.fulfill(response=response, body=body)

    log_in(page, live_server.url, username="rita", password=RESEARCHER_PASSWORD)
    url = f"{live_server.url}/research/campaigns/{labelled.pk}/"
    page.route(url, poll_every_second)
    page.goto(url)
    root = page.locator("#dashboard")
    expect(root).to_have_attribute("data-state", "ready")
    # The WSGI live server has no WebSocket route: the socket fails and the page polls.
    expect(root).to_have_attribute("data-live", "polling")
    expect(page.locator(".live-state")).to_contain_text("checking every few seconds")
    mark_document(page)

    off_the_loop(lambda: label_as(cast["tess"], labelled))

    expect(page.locator('#progress [data-progress="done"]')).to_have_text("11", timeout=5_000)
    expect(
        page.locator('#annotators tr[data-username="tess"] [data-column="labels"]')
    ).to_have_text("3", timeout=5_000)
    assert page.evaluate("window.preflabResearch.feed.polls") >= 1
    assert_same_document(page)
