"""Middleware adapters for serving under ASGI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise that Django can run in an async middleware chain.

    WhiteNoise 6 is sync-only. One sync middleware in an otherwise async chain makes Django's
    ASGI handler hop event loop → thread → event loop → thread on every request (three
    context switches plus a per-request executor); profiled under uvicorn, that plumbing cost
    about as much CPU as the labelling views themselves. Here the lookup of a static file
    (a dict get, unless autorefresh) runs on the event loop and only the file response is
    built in a thread.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[..., Any] | None = None, settings: Any = None) -> None:
        if settings is None:
            super().__init__(get_response)
        else:
            super().__init__(get_response, settings=settings)
        self._async = get_response is not None and iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:
            # Finding a file touches the filesystem (DEBUG only): keep it off the event loop.
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response  # type: ignore[assignment]
        return await get_response(request)
