"""The Redis channel layer as the site configures it, against the real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from channels_redis.core import RedisChannelLayer

from config.channel_layers import redis_channel_layer
from tests.websockets import REDIS_URL as URL

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_receiver_idle_past_the_layers_wait_still_gets_its_message() -> None:
    """channels_redis waits 5 s per BZPOPMIN and then waits again. With redis-py 8's default
    5 s read timeout the first idle wait raised TimeoutError instead, which killed the
    consumer: a run page watching a queued run heard nothing once the worker started."""
    layer = RedisChannelLayer(**redis_channel_layer(URL)["CONFIG"])
    idle = layer.brpop_timeout + 1.5

    async def scenario() -> tuple[dict, float]:
        channel = await layer.new_channel()
        started = time.monotonic()

        async def send_later() -> None:
            await asyncio.sleep(idle)
            await layer.send(channel, {"type": "run.event", "payload": {"event": "status"}})

        sender = asyncio.ensure_future(send_later())
        try:
            message = await asyncio.wait_for(layer.receive(channel), timeout=idle + 10)
        finally:
            await sender
            await layer.close_pools()
        return message, time.monotonic() - started

    message, waited = asyncio.run(scenario())
    assert message == {"type": "run.event", "payload": {"event": "status"}}
    assert waited >= idle


@pytest.mark.slow
def test_the_site_builds_its_redis_layer_with_reads_longer_than_the_layers_wait(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PREFLAB_", "DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    env.update({"PREFLAB_VAR_DIR": str(tmp_path / "var"), "REDIS_URL": URL})
    code = "import json, config.settings as s; print(json.dumps(s.CHANNEL_LAYERS['default']))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    layer = json.loads(result.stdout)
    assert layer == redis_channel_layer(URL)
    (host,) = layer["CONFIG"]["hosts"]
    assert host["socket_timeout"] > RedisChannelLayer.brpop_timeout
