"""ASGI entry point: HTTP through Django, WebSocket through Channels consumers."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # what get_asgi_application() does before making its handler

from config.asgi_handler import OneHopASGIHandler  # noqa: E402  (needs apps loaded)

# Django's ASGI handler, except that POST next / judgement run in one thread hop (see there).
django_asgi_app = OneHopASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs apps loaded)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Django imports the URLconf, and with it every view, DRF and the schema generator, on the
# first request: ~1 s on the 2-core VM, which the first annotators after a (re)start waited
# for. Load it here instead, before the heap is frozen below.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns

# Everything loaded so far (Django, the apps, the URL and template machinery) lives as long as
# the process: freezing it keeps the collector from walking ~100,000 objects (~45 ms on the
# 2-core VM) in every full collection, which showed as latency spikes under load.
if os.environ.get("PREFLAB_GC_FREEZE", "1") != "0":
    import gc

    gc.collect()
    gc.freeze()
