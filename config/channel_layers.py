"""The Redis channel layer's settings, built in one place for the site and the tests."""

from __future__ import annotations

from typing import Any

# channels_redis waits for a socket's next message with BZPOPMIN for up to 5 s
# (RedisChannelLayer.brpop_timeout) and then waits again. redis-py 8 gives every connection a
# 5 s read timeout by default, so an idle wait could time out on our side first: the read
# raised TimeoutError, the consumer died, and a run page or campaign page open on a quiet
# run stopped hearing anything. Reads get well past the layer's wait, and a dead Redis
# connection still shows up as an error within this many seconds.
REDIS_READ_TIMEOUT_S = 30


def redis_channel_layer(url: str) -> dict[str, Any]:
    """``CHANNEL_LAYERS["default"]`` for the Redis at ``url``."""
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": url, "socket_timeout": REDIS_READ_TIMEOUT_S}]},
    }
