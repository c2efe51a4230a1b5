"""Helpers for WebSocket tests through the real ASGI app (session cookie auth); the
``layer`` fixture in tests/conftest.py runs a test on the in-memory and the Redis layer."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.channel_layers import redis_channel_layer

# The channel-layer tests' Redis database (RQ tests use 7, browser tests 6), so one kind of
# test never sees another's keys.
REDIS_URL = "redis://127.0.0.1:6379/5"
REDIS_LAYER = redis_channel_layer(REDIS_URL)
MEMORY_LAYER = {"BACKEND": "channels.layers.InMemoryChannelLayer"}


def session_cookie(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def ws_connect(path: str, user: Any | None) -> WebsocketCommunicator:
    """A communicator on the project's ASGI application, logged in as ``user`` (or anonymous)."""
    from config.asgi import application

    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    return WebsocketCommunicator(application, path, headers=headers)
