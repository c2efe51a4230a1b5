"""Every WebSocket route of the site: the feedback app's and the learning app's."""

from django.urls import path

from feedback.routing import websocket_urlpatterns as feedback_patterns
from learning.consumers import TrainingRunConsumer

websocket_urlpatterns = [
    *feedback_patterns,
    path("ws/runs/<int:run_id>/", TrainingRunConsumer.as_asgi()),
]
