"""Django's ASGI handler, with the hot labelling requests run in one thread hop.

Django's ``ASGIHandler`` runs a sync view in three hops to a thread made for each request
(``request_started`` receivers, the view, ``response.close()``), inside a
``ThreadSensitiveContext`` whose executor starts and joins a new thread per request.
Profiled under uvicorn (docs/benchmarks.md, issue 3), that plumbing cost more CPU than the
labelling views themselves. For the requests named in ``ONE_HOP_PATHS`` this handler does
what Django's WSGI handler does instead: the whole request (signals, sync middleware chain,
view, close) runs in one call on a shared pool of threads, and the loop only reads the body
and writes the response. Everything else, WebSocket included, goes through Django's handler
unchanged.

The views on these paths are sync and never stream, so nothing is lost: database
connections are still opened and closed (returned to the pool) by the request signals in
the thread that used them, and ``async_to_sync`` inside the view (live-update broadcasts)
still runs on this server's event loop, as under ``sync_to_async``.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import HttpResponse, HttpResponseBase
from django.urls import set_script_prefix

from config.env import env_int

# POST next (lease) and POST judgement: the two requests every labelling step makes.
ONE_HOP_PATHS = re.compile(r"^/api/v1/(campaigns/\d+/next|assignments/\d+/judgement)/$")


class OneHopASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        # The same middleware, loaded in sync mode, as the WSGI handler loads it.
        self._sync = BaseHandler()
        self._sync.load_middleware(is_async=False)
        # Threads are reused across requests. Each holds at most one database connection
        # at a time, so DB_POOL_MAX_SIZE at or above this never makes a request wait.
        self._executor = ThreadPoolExecutor(
            max_workers=env_int("PREFLAB_ASGI_THREADS", 8, minimum=1), thread_name_prefix="preflab-http"
        )
        # Made once: building the wrapper inspects the function each time. Through asgiref
        # (not run_in_executor) so that async_to_sync in the thread finds this event loop.
        self._respond_async = sync_to_async(self._respond, thread_sensitive=False, executor=self._executor)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and ONE_HOP_PATHS.match(scope["path"]):
            await self._handle_one_hop(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def _handle_one_hop(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        response = await self._respond_async(scope, body_file)
        await self.send_response(response, send)

    def _respond(self, scope: dict[str, Any], body_file: IO[bytes]) -> HttpResponseBase:
        """The WSGI handler's steps for one request, in this (pool) thread."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        try:
            request, response = self.create_request(scope, body_file)
            if request is not None:
                response = self._sync.get_response(request)
            assert response is not None
            response._handler_class = self.__class__
            if response.streaming:
                # Not expected on these paths; read it here rather than on the event loop.
                streamed = HttpResponse(b"".join(response), status=response.status_code)
                for header, value in response.items():
                    streamed[header] = value
                response.close()
                response = streamed
        finally:
            body_file.close()
        response.close()  # request_finished: closes this thread's database connection
        return response
