"""The reward-learning half of the loop, end to end, through the real pieces: simulated
annotators label over HTTP, an admin starts a run through the API, a real worker process
trains it while the run page's socket (on the Redis channel layer, as the worker's events
need) receives its status changes and progress, the version is promoted through the API, and
the active selector queues pairs stamped with that version."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.db import connections

from feedback.models import Campaign, Judgement, Pair
from learning.models import ModelVersion, TrainingRun
from tests.feedback.conftest import quick_campaign  # noqa: F401 - a fixture
from tests.learning.test_simulate_annotators import simulate
from tests.learning.test_training_runs import ROOT, TINY, WORKER, worker_env
from tests.websockets import REDIS_LAYER, REDIS_URL, session_cookie

FINISHED = {"succeeded", "failed", "cancelled"}


class RunSocket:
    """The run page's socket ``ws/runs/<id>/`` through the project's ASGI app, read in a
    thread with its own event loop until a status event says the run finished."""

    def __init__(self, run_id: int, user: Any) -> None:
        self.path = f"/ws/runs/{run_id}/"
        self.cookie = session_cookie(user)
        self.messages: list[dict[str, Any]] = []
        self.joined = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self._watch())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.joined.set()

    async def _watch(self) -> None:
        from config.asgi import application

        headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", self.cookie)]
        communicator = WebsocketCommunicator(application, self.path, headers=headers)
        try:
            assert (await communicator.connect())[0], "the run socket refused the admin"
            while True:
                message = await communicator.receive_json_from(timeout=120)
                self.messages.append(message)
                self.joined.set()  # the state on connect: the consumer is in the run's group
                if message["event"] == "status" and message["status"] in FINISHED:
                    break
            await communicator.disconnect()
        finally:
            await sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def _redis_layer(settings: Any) -> Any:
    """The channel layer a worker in another process can reach this process's sockets by."""
    settings.CHANNEL_LAYERS = {"default": REDIS_LAYER}
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_redis_layer")
def test_simulated_labels_train_a_model_that_chooses_the_next_pairs(
    live_server: Any, quick_campaign: Callable[..., Campaign], admin_user: Any,  # noqa: F811
    api_client_for: Callable[..., Any],
) -> None:
    campaign = quick_campaign(name="loop", n_trajectories=4, length=20, pairs=12)
    simulate(live_server, campaign, "oracle", "--workers", "2")
    assert Judgement.objects.filter(pair__campaign=campaign, is_simulated=True).count() == 12

    client = api_client_for(admin_user)
    response = client.post("/api/v1/learning/runs/", {"campaign": campaign.pk, "config": TINY}, format="json")
    assert response.status_code == 201, response.content
    run_id = response.json()["id"]

    socket = RunSocket(run_id, admin_user)
    assert socket.joined.wait(timeout=30) and socket.error is None, socket.error
    worker = subprocess.run(
        WORKER, check=False, cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={**worker_env(), "REDIS_URL": REDIS_URL},
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr
    socket.thread.join(timeout=30)
    seen = [(m["event"], m.get("status"), m.get("progress")) for m in socket.messages]
    assert not socket.thread.is_alive() and socket.error is None, (
        socket.error, seen, TrainingRun.objects.get(pk=run_id).status, worker.stderr[-3000:]
    )

    run = TrainingRun.objects.get(pk=run_id)
    assert run.status == "succeeded", run.log
    assert run.metrics and run.progress == pytest.approx(1.0)
    version = ModelVersion.objects.get(run=run)
    assert "held_out_accuracy" in str(version.metrics)

    # What the page's socket got from the worker process: the state on connect, the claim,
    # each epoch's progress with its curves' points, and the end with its log.
    first, *pushed, last = socket.messages
    assert (first["event"], first["status"]) == ("progress", "queued")
    assert (pushed[0]["event"], pushed[0]["status"]) == ("status", "running")
    progress = [m for m in pushed if m["event"] == "progress"]
    assert progress and [m["progress"] for m in progress] == sorted(m["progress"] for m in progress)
    assert progress[-1]["progress"] == pytest.approx(1.0)
    assert [m["epoch"] for m in progress[-1]["metrics"]] == [1.0, 2.0, 3.0]
    assert all("held_out_accuracy" in m for m in progress[-1]["metrics"])
    assert (last["event"], last["status"]) == ("status", "succeeded")
    assert f"Registered reward model version {version.pk}." in last["log"]
    assert last["result"]["held_out_accuracy"] == version.metrics["held_out_accuracy"]

    promoted = client.post(f"/api/v1/learning/model-versions/{version.pk}/promote/")
    assert promoted.status_code == 200, promoted.content
    before = set(Pair.objects.filter(campaign=campaign).values_list("segment_a_id", "segment_b_id"))
    call_command("select_pairs", "--campaign", str(campaign.pk), "--count", "3")
    chosen = Pair.objects.filter(campaign=campaign, selector="disagreement")
    assert chosen.count() == 3
    assert {p.model_version for p in chosen} == {str(version.pk)}
    assert before.isdisjoint((p.segment_a_id, p.segment_b_id) for p in chosen)
