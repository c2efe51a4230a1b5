"""The admin training pages in a real browser, with a real worker.

An admin opens a campaign's training page, tries a bad learning rate (the API's 400 shows),
starts a tiny run through the form (it appears queued), watches the run page while a
``db_worker --batch`` subprocess trains it (WSGI live server: no socket, so the page polls),
sees it succeed with its curves drawn, and promotes the model version. Run on their own:

    PREFLAB_MODE=test python -m pytest tests/e2e -m e2e -q -p no:asyncio -k training
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from learning.models import ModelVersion, TrainingRun
from tests.e2e.conftest import E2E_REDIS_URL, AsgiServer
from tests.e2e.pages import log_in, off_the_loop
from tests.feedback.conftest import quick_campaign  # noqa: F401 - a fixture
from tests.learning.test_training_runs import ROOT, WORKER, label_all, run_worker, worker_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("transactional_db")]

ADMIN_PASSWORD = "ada-pass-123"


@pytest.fixture
def labelled(quick_campaign: Callable[..., Any], annotator: Any, other_annotator: Any) -> Any:  # noqa: F811
    """12 pairs, each labelled by two annotators (24 judgements), made off Playwright's loop."""

    def make() -> Any:
        campaign = quick_campaign(name="Train me", n_trajectories=3, length=20, pairs=12, overlap=2)
        assert label_all(campaign, [annotator, other_annotator]) == 24
        return campaign

    return off_the_loop(make)


def fill_form(page: Page, *, lr: str) -> None:
    form = page.locator("#start-form")
    form.get_by_label("Ensemble size").fill("2")
    form.get_by_label("Hidden sizes").fill("8")
    form.get_by_label("Max epochs").fill("3")
    form.get_by_label("Learning rate").fill(lr)
    form.get_by_role("button", name="Start run").click()


def test_an_admin_starts_watches_and_promotes_a_run(
    page: Page, live_server: Any, labelled: Any, admin_user: Any
) -> None:
    base = live_server.url
    campaign_path = f"/training/campaigns/{labelled.pk}/"
    log_in(page, base, username="ada", password=ADMIN_PASSWORD, next_path=campaign_path)
    expect(
        page.get_by_role("navigation", name="Account").get_by_role("link", name="Training")
    ).to_be_visible()

    # A bad learning rate: the API's 400 is shown and nothing is queued.
    fill_form(page, lr="0")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("lr must be > 0")
    assert not TrainingRun.objects.exists()

    fill_form(page, lr="0.01")
    expect(page.locator("#error")).to_be_hidden()
    row = page.locator("#runs tbody tr[data-run-id]")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-status", "queued")
    expect(row.locator('[data-column="status"]')).to_have_text("queued")
    run = TrainingRun.objects.get()
    assert run.config["net"]["hidden_sizes"] == [8] and run.config["net"]["ensemble_size"] == 2
    assert run.config["train"]["max_epochs"] == 3 and run.config["train"]["lr"] == 0.01
    assert run.triggered_by == admin_user

    # The run page, open while the worker trains: it polls (no socket under WSGI).
    row.get_by_role("link", name=f"Run {run.pk}").click()
    page.wait_for_url(f"{base}/training/runs/{run.pk}/")
    root = page.locator("#run")
    expect(root).to_have_attribute("data-status", "queued")
    expect(root).to_have_attribute("data-live", "polling", timeout=10_000)
    expect(page.locator("#cancel")).to_be_visible()

    worker = run_worker()
    assert worker.returncode == 0, worker.stdout + worker.stderr
    run.refresh_from_db()
    assert run.status == "succeeded", run.log

    expect(root).to_have_attribute("data-status", "succeeded", timeout=15_000)
    expect(root).to_have_attribute("data-points", "3")
    assert int(root.get_attribute("data-polls") or 0) >= 1
    expect(page.locator('[data-run="progress"]')).to_have_text("100%")
    expect(page.locator('[data-run="device"]')).to_have_text("cpu")
    expect(page.locator('[data-run="triggered-by"]')).to_have_text("ada")
    expect(page.locator("#cancel")).to_be_hidden()
    for chart in ("train-loss", "held-out-loss", "train-accuracy", "held-out-accuracy"):
        expect(page.locator(f"#chart-{chart} svg circle.point")).to_have_count(3)
        expect(page.locator(f"#chart-{chart} svg path.line")).to_have_count(1)

    # Back on the campaign page: the version is listed with its evaluation; promote it.
    page.goto(f"{base}{campaign_path}")
    version = ModelVersion.objects.get(run=run)
    version_row = page.locator(f'#versions tr[data-version-id="{version.pk}"]')
    expect(version_row).to_have_attribute("data-promoted", "false")
    accuracy = version.metrics["held_out_accuracy"]
    expect(version_row.locator('[data-column="accuracy"]')).to_have_text(f"{accuracy:.3f}")
    version_row.get_by_role("button", name="Promote").click()
    expect(page.locator(f'#versions tr[data-version-id="{version.pk}"]')).to_have_attribute(
        "data-promoted", "true"
    )
    version.refresh_from_db()
    assert version.promoted and version.promoted_at is not None


@pytest.fixture
def labelled_live(
    asgi_server: AsgiServer,
    quick_campaign: Callable[..., Any],  # noqa: F811
    annotator: Any,
    other_annotator: Any,
) -> Any:
    """As ``labelled``, with the clips' arrays where the ASGI server and the worker read them."""

    def make() -> Any:
        campaign = quick_campaign(
            name="Train live", n_trajectories=3, length=20, pairs=12, overlap=2
        )
        assert label_all(campaign, [annotator, other_annotator]) == 24
        return campaign

    return off_the_loop(make)


def test_the_run_page_follows_the_workers_progress_over_the_socket(
    page: Page, asgi_server: AsgiServer, labelled_live: Any, admin_user: Any
) -> None:
    """Under daphne with Redis as the channel layer, the worker's reports arrive pushed."""
    from learning import services
    from learning.runner import RunConfig

    config = RunConfig.from_dict(
        {
            "net": {"hidden_sizes": [8], "ensemble_size": 2},
            "train": {"max_epochs": 3, "batch_size": 4, "device": "cpu"},
        }
    )
    run = off_the_loop(
        lambda: services.run_enqueue(campaign=labelled_live, config=config, triggered_by=admin_user)
    )
    path = f"/training/runs/{run.pk}/"
    log_in(page, asgi_server.url, username="ada", password=ADMIN_PASSWORD, next_path=path)
    root = page.locator("#run")
    expect(root).to_have_attribute("data-live", "live", timeout=10_000)
    expect(root).to_have_attribute("data-pushed", "1")  # the state sent on connect

    worker = subprocess.run(
        WORKER,
        check=False,
        cwd=ROOT,
        env={**worker_env(), "REDIS_URL": E2E_REDIS_URL},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr

    expect(root).to_have_attribute("data-status", "succeeded", timeout=20_000)
    expect(root).to_have_attribute("data-points", "3")
    assert int(root.get_attribute("data-pushed") or 0) >= 2  # connect + the worker's reports
    assert root.get_attribute("data-polls") == "0"  # pushed, never polled
    expect(page.locator("#chart-held-out-accuracy svg circle.point")).to_have_count(3)


def test_an_admin_sets_the_retrain_rule_and_queues_a_loop_iteration_from_the_page(
    page: Page, live_server: Any, labelled: Any, admin_user: Any
) -> None:
    from learning.models import RetrainRule

    base = live_server.url
    campaign_path = f"/training/campaigns/{labelled.pk}/"
    log_in(page, base, username="ada", password=ADMIN_PASSWORD, next_path=campaign_path)

    rule_form = page.locator("#rule-form")
    rule_form.get_by_label("After every N new judgements").fill("0")
    rule_form.get_by_role("button", name="Save rule").click()
    expect(page.locator("#error")).to_contain_text("every_judgements")
    rule_form.get_by_label("After every N new judgements").fill("25")
    rule_form.get_by_role("button", name="Save rule").click()
    expect(page.locator("#rule-state")).to_contain_text("after every 25 new judgements")
    rule = off_the_loop(lambda: RetrainRule.objects.get(campaign=labelled))
    assert (rule.every_judgements, rule.enabled, rule.last_judgement_count) == (25, True, 24)

    loop_form = page.locator("#loop-form")
    loop_form.get_by_label("Algorithm").select_option("ppo")
    loop_form.get_by_label("Environment steps").fill("64")
    loop_form.get_by_label("Pairs to queue").fill("2")
    loop_form.get_by_label("Policy starts from").select_option("bc")
    loop_form.get_by_label("Policy trains against").select_option("airl")
    loop_form.get_by_role("button", name="Start loop iteration").click()
    expect(page.locator("#status")).to_contain_text("Loop iteration")
    run = off_the_loop(lambda: TrainingRun.objects.get(campaign=labelled, kind="loop"))
    assert run.config["finetune"]["total_steps"] == 64 and run.config["loop"]["pairs"] == 2
    assert (run.config["loop"]["init"], run.config["adversarial"]["kind"]) == ("bc", "airl")
    expect(page.locator(f'#runs tr[data-run-id="{run.pk}"]')).to_contain_text("loop iteration")
