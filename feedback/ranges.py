"""HTTP Range support for serving clips, so browsers can seek (RFC 9110 §14)."""

from __future__ import annotations

import re
from typing import IO, Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 64 * 1024


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Return inclusive ``(first, last)`` for a single-range header, or None if unsatisfiable.

    Multi-range requests are answered with the first range only, which RFC 9110 allows.
    Raises ValueError for a header that is not a byte range at all.
    """
    spec = header.split(",")[0].strip()
    match = _RANGE.match(spec)
    if not match:
        raise ValueError(header)
    first_s, last_s = match.groups()
    if not first_s and not last_s:
        raise ValueError(header)
    if not first_s:  # suffix range: the last N bytes
        length = int(last_s)
        if length == 0:
            return None
        return max(size - length, 0), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if first >= size or last < first:
        return None
    return first, min(last, size - 1)


def _chunks(handle: IO[bytes], first: int, count: int) -> Iterator[bytes]:
    try:
        handle.seek(first)
        remaining = count
        while remaining > 0:
            data = handle.read(min(CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
    finally:
        handle.close()


def ranged_file_response(
    request: HttpRequest, handle: IO[bytes], *, size: int, content_type: str
) -> HttpResponse:
    """200 with the whole file, 206 with the asked range, or 416 when it is unsatisfiable."""
    header = request.headers.get("Range", "")
    first, last = 0, size - 1
    status = 200
    if header:
        try:
            parsed = parse_range(header, size)
        except ValueError:
            parsed = (0, size - 1)  # not a byte range: ignore it, as RFC 9110 says
            header = ""
        if parsed is None:
            handle.close()
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        first, last = parsed
        status = 206 if header else 200
    response = StreamingHttpResponse(
        _chunks(handle, first, last - first + 1), status=status, content_type=content_type
    )
    response["Content-Length"] = str(last - first + 1)
    response["Accept-Ranges"] = "bytes"
    if status == 206:
        response["Content-Range"] = f"bytes {first}-{last}/{size}"
    response["Cache-Control"] = "private, max-age=3600"
    return response
