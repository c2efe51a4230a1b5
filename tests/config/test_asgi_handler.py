"""The ASGI entry point: POST next / judgement run in one hop (config/asgi_handler.py) and
answer exactly as through Django's own handler; other requests are untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.db import connections
from rest_framework.authtoken.models import Token

from config.asgi_handler import ONE_HOP_PATHS
from feedback.models import Assignment, Judgement

ASYNC_DB = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ANSWER = {"preference": "left", "left_desirability": "desirable", "right_desirability": "unsure"}


@pytest_asyncio.fixture
async def close_thread_connections() -> Any:
    """The one-hop pool's threads close their connections per request; sync_to_async's
    shared thread does not, and would block the test database's teardown on PostgreSQL."""
    yield
    await sync_to_async(connections.close_all)()


async def _post(path: str, token: str, body: bytes) -> tuple[int, Any]:
    from config.asgi import application

    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"authorization", f"Token {token}".encode())]
    response = await HttpCommunicator(application, "POST", path, body=body, headers=headers).get_response(timeout=10)
    return response["status"], json.loads(response["body"]) if response["body"] else None


def test_the_entry_point_loads_every_view_before_the_first_request() -> None:
    """Loading the URLconf (every view, DRF, the schema generator) took ~1 s, which the first
    requests after a (re)start waited for; the entry point does it at import. A fresh
    interpreter, since this one has long loaded the URLconf."""
    probe = (
        "import config.asgi, sys; from django.urls import get_resolver; "
        "print('url_patterns' in vars(get_resolver()), 'feedback.apis.annotation' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[2], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def test_only_the_two_labelling_posts_take_the_one_hop_path() -> None:
    assert ONE_HOP_PATHS.match("/api/v1/campaigns/12/next/")
    assert ONE_HOP_PATHS.match("/api/v1/assignments/7/judgement/")
    for other in ("/api/v1/campaigns/12/", "/api/v1/campaigns/x/next/", "/api/v1/assignments/7/judgement",
                  "/api/v1/datasets/", "/clips/3.mp4", "/api/v1/campaigns/12/next/extra/"):
        assert not ONE_HOP_PATHS.match(other)


@pytest.mark.usefixtures("close_thread_connections")
@ASYNC_DB[0]
@ASYNC_DB[1]
async def test_next_and_judgement_through_the_asgi_app(make_campaign: Any, annotator: Any) -> None:
    campaign = await sync_to_async(make_campaign)(pairs=2)
    token = (await sync_to_async(Token.objects.create)(user=annotator)).key

    status, lease = await _post(f"/api/v1/campaigns/{campaign.pk}/next/", token, b"{}")
    assert status == 200 and set(lease) == {"assignment_id", "campaign_id", "expires_at", "left", "right"}
    assert lease["left"]["clip_url"].startswith("http://127.0.0.1/clips/")
    judgement_path = f"/api/v1/assignments/{lease['assignment_id']}/judgement/"
    status, body = await _post(judgement_path, token, json.dumps(ANSWER).encode())
    assert status == 201 and body["assignment_id"] == lease["assignment_id"]
    again = await _post(judgement_path, token, json.dumps(ANSWER).encode())
    assert again == (200, body)  # idempotent resubmit
    assert await sync_to_async(Judgement.objects.count)() == 1
    assert (await sync_to_async(Assignment.objects.get)(pk=lease["assignment_id"])).completed_at is not None


@pytest.mark.usefixtures("close_thread_connections")
@ASYNC_DB[0]
@ASYNC_DB[1]
async def test_refusals_through_the_asgi_app_keep_their_status_and_reason(make_campaign: Any, annotator: Any) -> None:
    campaign = await sync_to_async(make_campaign)(pairs=1)
    token = (await sync_to_async(Token.objects.create)(user=annotator)).key
    assert (await _post(f"/api/v1/campaigns/{campaign.pk}/next/", "wrong", b"{}"))[0] == 401
    status, body = await _post(f"/api/v1/campaigns/{campaign.pk}/next/", token, b'{"exclude": "3"}')
    assert status == 400 and "exclude" in body["detail"]
    status, body = await _post("/api/v1/assignments/4242/judgement/", token, json.dumps(ANSWER).encode())
    assert status == 404 and "4242" in body["detail"]
    status, body = await _post(f"/api/v1/campaigns/{campaign.pk}/next/", token, b'{"exclude": [')
    assert status == 400 and "JSON parse error" in body["detail"]
