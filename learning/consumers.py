"""WebSocket consumer: a training run's live progress for the run page."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from feedback.roles import can_research
from learning.broadcast import run_group, run_state_get


class TrainingRunConsumer(AsyncJsonWebsocketConsumer):
    """``ws/runs/<id>/``: sends the run's state on connect, then every progress event.

    Researchers and admins only. Closes with 4401 for anonymous users, 4403 for other
    roles, 4404 for an unknown run.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await database_sync_to_async(can_research)(user):
            await self.close(code=4403)
            return
        state = await database_sync_to_async(run_state_get)(self.run_id)
        if state is None:
            await self.close(code=4404)
            return
        self.group = run_group(self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"event": "progress", **state})

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def run_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["payload"])

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if content == {"type": "ping"}:
            await self.send_json({"event": "pong"})
