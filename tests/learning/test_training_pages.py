"""The admin training pages and the run's live socket.

Researchers and admins see a campaign's training page and a run's page; only admins get the
start form and the Cancel / Promote / Roll back buttons (the API refuses the actions to
anyone else). Annotators and accounts without a role get 403; anonymous visitors are sent to
the login page. The socket ``ws/runs/<id>/`` sends the run's state on connect and every
progress event; it is for researchers and admins only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import Client
from django.urls import reverse

from learning.models import ModelVersion, TrainingRun
from tests.websockets import ws_connect

ROLES = ["anonymous", "annotator", "researcher", "admin_user", "outsider"]
EXPECTED = {"anonymous": 302, "annotator": 403, "researcher": 200, "admin_user": 200, "outsider": 403}

METRICS = [
    {"epoch": 1.0, "step": 3.0, "train_loss": 0.69, "train_accuracy": 0.5,
     "held_out_loss": 0.68, "held_out_accuracy": 0.5},
    {"epoch": 2.0, "step": 6.0, "train_loss": 0.55, "train_accuracy": 0.75,
     "held_out_loss": 0.6, "held_out_accuracy": 0.75},
]


def _client(request: pytest.FixtureRequest, role: str) -> Client:
    client = Client()
    if role != "anonymous":
        client.force_login(request.getfixturevalue(role))
    return client


@pytest.fixture
def campaign(make_campaign: Any) -> Any:
    return make_campaign(name="Hopper, batch 2", pairs=2)


@pytest.fixture
def run(campaign: Any, admin_user: Any) -> TrainingRun:
    return TrainingRun.objects.create(
        campaign=campaign, triggered_by=admin_user, status="running", progress=0.4,
        metrics=METRICS, device="cpu", log="resumed from epoch 1",
    )


@pytest.fixture
def versions(campaign: Any, run: TrainingRun) -> list[ModelVersion]:
    older = ModelVersion.objects.create(
        run=run, campaign=campaign, artifact="model_versions/a.pt",
        metrics={"held_out_accuracy": 0.8, "held_out_ece": 0.05, "pearson": 0.9},
    )
    newer = ModelVersion.objects.create(
        run=run, campaign=campaign, artifact="model_versions/b.pt", promoted=True,
        metrics={"held_out_accuracy": 0.9125, "held_out_ece": 0.04, "pearson": None},
    )
    return [older, newer]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_the_campaign_training_page_is_for_researchers_and_admins(
    request: pytest.FixtureRequest, campaign: Any, run: TrainingRun, versions: list[ModelVersion],
    role: str,
) -> None:
    response = _client(request, role).get(reverse("learning:campaign", args=[campaign.pk]))

    assert response.status_code == EXPECTED[role]
    if role == "anonymous":
        assert response["Location"].startswith(reverse("login") + "?next=")
    if response.status_code != 200:
        return
    html = response.content.decode()
    assert campaign.name in html
    assert f'data-run-id="{run.pk}"' in html and "0.913" in html and "0.040" in html
    older, _newer = versions
    admin = role == "admin_user"
    assert ('id="start-form"' in html) is admin
    assert (f'data-action="promote" data-version-id="{older.pk}"' in html) is admin
    # The promoted version offers a roll back to the one before it.
    assert (f'data-action="rollback" data-version-id="{older.pk}"' in html) is admin
    assert 'data-runs-url="/api/v1/learning/runs/"' in html


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["researcher", "admin_user"])
def test_the_campaign_page_shows_the_loop_history_and_admins_get_the_loop_form(
    request: pytest.FixtureRequest, campaign: Any, admin_user: Any, role: str
) -> None:
    loop = TrainingRun.objects.create(
        campaign=campaign, kind="loop", triggered_by=admin_user, status="succeeded", progress=1.0,
        dataset={"num_judgements": 40},
        result={
            "iteration": 1, "labels_used": 40, "reward_held_out_accuracy": 0.8751,
            "reward_model_version": 7, "policy_true_return": -512.34, "policy_version": 8,
            "parent_policy_version": 5, "pairs_queued": 20, "wall_time_s": 93.2,
        },
    )  # fmt: skip
    html = _client(request, role).get(reverse("learning:campaign", args=[campaign.pk])).content
    html = html.decode()
    history = html[html.index('id="loop-history"') :]
    assert f'data-run-id="{loop.pk}"' in history
    for text in ("0.875", "(v7)", "-512.3", "(v8 ← v5)", ">20<", "93 s"):
        assert text in history, text
    assert ('id="loop-form"' in html) is (role == "admin_user")
    assert "loop iteration" in html  # the runs table names each run's kind


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_the_run_page_is_for_researchers_and_admins(
    request: pytest.FixtureRequest, run: TrainingRun, role: str
) -> None:
    response = _client(request, role).get(reverse("learning:run", args=[run.pk]))

    assert response.status_code == EXPECTED[role]
    if response.status_code != 200:
        return
    html = response.content.decode()
    assert f'data-detail-url="/api/v1/learning/runs/{run.pk}/"' in html
    assert f'data-socket-path="/ws/runs/{run.pk}/"' in html
    assert "resumed from epoch 1" in html
    assert '<dd data-run="triggered-by">ada</dd>' in html and '<dd data-run="device">cpu</dd>' in html
    state = json.loads(html.split('<script id="run-state" type="application/json">')[1].split("</script>")[0])
    assert state["status"] == "running" and state["metrics"] == METRICS
    assert ('id="cancel"' in html) is (role == "admin_user")


@pytest.mark.django_db
def test_unknown_ids_are_404(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    assert client.get(reverse("learning:campaign", args=[9999])).status_code == 404
    assert client.get(reverse("learning:run", args=[9999])).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_the_training_index_and_the_nav_link(
    request: pytest.FixtureRequest, campaign: Any, role: str
) -> None:
    client = _client(request, role)
    response = client.get(reverse("learning:index"))
    assert response.status_code == EXPECTED[role]
    if response.status_code == 200:
        assert reverse("learning:campaign", args=[campaign.pk]) in response.content.decode()
    if role != "anonymous":
        home = client.get("/").content.decode()
        assert (f'href="{reverse("learning:index")}"' in home) is (role == "admin_user")


# --- the live socket ------------------------------------------------------------------------------

@pytest_asyncio.fixture
async def _close_thread_connections() -> Any:
    yield
    await sync_to_async(connections.close_all)()




@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_thread_connections")
async def test_the_run_socket_sends_the_state_then_each_progress_event(
    layer: str, run: TrainingRun, admin_user: Any
) -> None:
    from learning.broadcast import run_event_send

    communicator = await ws_connect(f"/ws/runs/{run.pk}/", admin_user)
    connected, _ = await communicator.connect()
    assert connected
    first = await communicator.receive_json_from(timeout=5)
    assert first["event"] == "progress" and first["id"] == run.pk
    assert first["status"] == "running" and first["progress"] == 0.4
    assert first["metrics"] == METRICS and first["triggered_by"] == admin_user.get_username()

    await sync_to_async(run_event_send)(
        run_id=run.pk, payload={"id": run.pk, "status": "running", "progress": 0.6, "metrics": METRICS}
    )
    pushed = await communicator.receive_json_from(timeout=5)
    assert pushed == {"event": "progress", "id": run.pk, "status": "running", "progress": 0.6,
                      "metrics": METRICS}

    await sync_to_async(run_event_send)(run_id=run.pk)  # no payload: the row's current state
    fresh = await communicator.receive_json_from(timeout=5)
    assert fresh["status"] == "running" and fresh["log"] == "resumed from epoch 1"

    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"event": "pong"}
    await communicator.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_thread_connections")
async def test_the_runners_progress_reports_reach_the_socket(
    layer: str, run: TrainingRun, researcher: Any
) -> None:
    from learning.runner import RunReporter

    communicator = await ws_connect(f"/ws/runs/{run.pk}/", researcher)
    assert (await communicator.connect())[0]
    await communicator.receive_json_from(timeout=5)  # the state sent on connect

    def report_an_epoch() -> bool:
        fresh = TrainingRun.objects.get(pk=run.pk)
        fresh.metrics = []
        reporter = RunReporter(fresh, max_epochs=4)
        return reporter.on_step(3, {**METRICS[0], "epoch": 2.0})

    assert await sync_to_async(report_an_epoch)() is True
    pushed = await communicator.receive_json_from(timeout=5)
    assert pushed["event"] == "progress" and pushed["status"] == "running"
    assert pushed["progress"] == 0.5 and [m["epoch"] for m in pushed["metrics"]] == [2.0]
    await communicator.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_thread_connections")
async def test_every_status_change_reaches_the_socket_with_the_whole_run(
    layer: str, campaign: Any, admin_user: Any
) -> None:
    """queued → running → (worker lost) queued → running → cancel asked → cancelled: each
    change is pushed as a ``status`` event carrying the run's state, log included, so the page
    never has to re-read the run to learn how it ended."""
    from datetime import timedelta

    from django.utils import timezone

    from learning import services

    run = await sync_to_async(TrainingRun.objects.create)(campaign=campaign, triggered_by=admin_user)
    communicator = await ws_connect(f"/ws/runs/{run.pk}/", admin_user)
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=5))["status"] == "queued"

    async def next_status() -> dict[str, Any]:
        message = await communicator.receive_json_from(timeout=5)
        assert message["event"] == "status" and message["id"] == run.pk
        return message

    await sync_to_async(services.run_claim)(run_id=run.pk)
    claimed = await next_status()
    assert (claimed["status"], claimed["attempts"]) == ("running", 1) and claimed["started_at"]

    later = timezone.now() + timedelta(minutes=10)
    await sync_to_async(services.run_mark_stale)(stale_after_s=60, requeue=True, now=later)
    swept = await next_status()
    assert swept["status"] == "queued" and "worker was lost" in swept["log"]

    await sync_to_async(services.run_claim)(run_id=run.pk)
    assert (await next_status())["attempts"] == 2
    await sync_to_async(services.run_cancel)(run=run)
    asked = await next_status()
    assert (asked["status"], asked["cancel_requested"]) == ("running", True)
    await sync_to_async(services.run_finish)(
        run=run, status=TrainingRun.Status.CANCELLED, log="Cancelled on request."
    )
    ended = await next_status()
    assert ended["status"] == "cancelled" and ended["finished_at"]
    assert ended["log"].endswith("Cancelled on request.")
    # A finish that changes nothing (a sweep got there first) announces nothing.
    await sync_to_async(services.run_finish)(run=run, status=TrainingRun.Status.SUCCEEDED)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


@pytest.mark.django_db
@pytest.mark.parametrize("shared", [False, True])
def test_the_run_page_knows_whether_worker_events_can_reach_it(
    settings: Any, run: TrainingRun, admin_user: Any, shared: bool
) -> None:
    """With the in-memory layer the page re-reads the run every few seconds even while its
    socket is open: the worker's events cannot reach this process."""
    from tests.websockets import MEMORY_LAYER, REDIS_LAYER

    settings.CHANNEL_LAYERS = {"default": REDIS_LAYER if shared else MEMORY_LAYER}
    client = Client()
    client.force_login(admin_user)
    html = client.get(reverse("learning:run", args=[run.pk])).content.decode()
    assert f'data-shared-layer="{str(shared).lower()}"' in html


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_thread_connections")
@pytest.mark.parametrize(
    ("who", "code"),
    [("anonymous", 4401), ("annotator", 4403), ("outsider", 4403), ("researcher", None),
     ("unknown-run", 4404)],
)
async def test_the_run_socket_is_for_researchers_and_admins(
    run: TrainingRun, who: str, code: int | None,
    annotator: Any, outsider: Any, researcher: Any, admin_user: Any,
) -> None:
    user = {"anonymous": None, "annotator": annotator, "outsider": outsider,
            "researcher": researcher, "unknown-run": admin_user}[who]
    run_id = run.pk + 1000 if who == "unknown-run" else run.pk
    communicator = await ws_connect(f"/ws/runs/{run_id}/", user)
    connected, close_code = await communicator.connect()
    if code is None:
        assert connected
        assert (await communicator.receive_json_from(timeout=5))["id"] == run.pk
        await communicator.disconnect()
    else:
        assert not connected and close_code == code


def test_a_failing_channel_layer_never_fails_the_reporter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's progress callback swallows (and logs) any broadcast error."""
    from learning import broadcast
    from learning.runner import RunReporter

    def boom(**kwargs: Any) -> None:
        raise RuntimeError("layer down")

    monkeypatch.setattr(broadcast, "run_event_send", boom)

    class FakeRun:
        pk = 1
        progress = 0.5
        metrics = ()
        heartbeat_at = None

    reporter = RunReporter.__new__(RunReporter)
    reporter.run = FakeRun()  # type: ignore[assignment]
    reporter._broadcast()  # does not raise
