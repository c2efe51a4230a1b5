"""WebSocket routes (live updates arrive with the labelling-loop work, issue 3)."""

from typing import Any

websocket_urlpatterns: list[Any] = []
