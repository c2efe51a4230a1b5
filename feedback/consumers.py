"""WebSocket consumers: live campaign progress for labelling and research pages."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from feedback.broadcast import campaign_group, campaign_progress
from feedback.models import Campaign
from feedback.roles import user_roles


class CampaignConsumer(AsyncJsonWebsocketConsumer):
    """``ws/campaigns/<id>/``: sends the current progress on connect, then every event.

    Closes with code 4401 for anonymous users, 4403 without a PrefLab role, 4404 for an
    unknown campaign.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.campaign_id = int(self.scope["url_route"]["kwargs"]["campaign_id"])
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await database_sync_to_async(user_roles)(user):
            await self.close(code=4403)
            return
        if not await database_sync_to_async(Campaign.objects.filter(pk=self.campaign_id).exists)():
            await self.close(code=4404)
            return
        self.group = campaign_group(self.campaign_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        progress = await database_sync_to_async(campaign_progress)(self.campaign_id)
        await self.send_json({"event": "progress", **progress})

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def campaign_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["payload"])

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Clients only listen; a ping keeps proxies from closing idle sockets.
        if content == {"type": "ping"}:
            await self.send_json({"event": "pong"})
