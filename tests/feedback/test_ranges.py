"""HTTP Range support for clips (RFC 9110 §14), so browsers can seek in video."""

from __future__ import annotations

import io
from typing import Any, Callable

import pytest
from django.test import RequestFactory

from feedback.models import Segment
from feedback.ranges import parse_range, ranged_file_response

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=100-199", (100, 199)),
        ("bytes=0-0", (0, 0)),
        ("bytes=999-999", (999, 999)),
        ("bytes=500-", (500, 999)),  # open-ended
        ("bytes=0-", (0, 999)),
        ("bytes=900-5000", (900, 999)),  # last clipped to the size
        ("bytes=-100", (900, 999)),  # suffix: the last 100 bytes
        ("bytes=-5000", (0, 999)),  # suffix longer than the file: all of it
        ("bytes=10-19, 50-59", (10, 19)),  # multi-range: the first range only
        ("bytes=10-19,50-59", (10, 19)),
    ],
)
def test_satisfiable_ranges_give_inclusive_first_and_last(header: str, expected: tuple[int, int]) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0", "bytes=50-10"])
def test_unsatisfiable_ranges_give_none(header: str) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=-", "items=0-10", "bytes=a-b", "0-10", "bytes=1-2-3", ""])
def test_headers_that_are_not_byte_ranges_raise_value_error(header: str) -> None:
    with pytest.raises(ValueError):
        parse_range(header, SIZE)


class _Handle(io.BytesIO):
    """A file handle that remembers being closed."""

    was_closed = False

    def close(self) -> None:
        self.was_closed = True
        super().close()


DATA = bytes(range(256)) * 4  # 1024 distinct-enough bytes


def _serve(range_header: str | None) -> tuple[Any, _Handle]:
    headers = {"HTTP_RANGE": range_header} if range_header is not None else {}
    request = RequestFactory().get("/clip", **headers)
    handle = _Handle(DATA)
    return ranged_file_response(request, handle, size=len(DATA), content_type="video/mp4"), handle


def _body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def test_no_range_gives_the_whole_file_and_advertises_ranges() -> None:
    response, handle = _serve(None)
    assert response.status_code == 200
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Length"] == str(len(DATA))
    assert response["Content-Type"] == "video/mp4"
    assert not response.has_header("Content-Range")
    assert _body(response) == DATA
    assert handle.was_closed


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=0-99", 0, 99), ("bytes=1000-", 1000, 1023), ("bytes=-24", 1000, 1023),
     ("bytes=300-299999", 300, 1023), ("bytes=5-9, 20-29", 5, 9)],
)
def test_a_range_gives_206_with_exactly_those_bytes(header: str, first: int, last: int) -> None:
    response, handle = _serve(header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert response["Content-Length"] == str(last - first + 1)
    assert response["Accept-Ranges"] == "bytes"
    assert _body(response) == DATA[first : last + 1]
    assert handle.was_closed


def test_an_unsatisfiable_range_is_416_with_the_size() -> None:
    response, handle = _serve("bytes=2048-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(DATA)}"
    assert handle.was_closed


def test_a_header_that_is_not_a_byte_range_is_ignored() -> None:
    response, _ = _serve("lines=1-2")
    assert response.status_code == 200
    assert _body(response) == DATA


def test_clip_view_serves_a_real_clip_with_ranges(
    make_campaign: Callable[..., Any], annotator: Any, api_client_for: Callable[..., Any]
) -> None:
    make_campaign(n_trajectories=1, length=10, segment_length=10, pairs=0)
    segment = Segment.objects.get()
    with segment.clip.open("rb") as handle:
        data = handle.read()
    assert data[4:8] == b"ftyp"
    client = api_client_for(annotator)
    url = f"/clips/{segment.pk}.mp4"

    whole = client.get(url)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes"
    assert whole["Content-Type"] == "video/mp4" and _body(whole) == data

    part = client.get(url, HTTP_RANGE="bytes=100-199")
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert _body(part) == data[100:200]

    tail = client.get(url, HTTP_RANGE="bytes=-64")
    assert tail.status_code == 206 and _body(tail) == data[-64:]

    beyond = client.get(url, HTTP_RANGE=f"bytes={len(data)}-")
    assert beyond.status_code == 416
    assert beyond["Content-Range"] == f"bytes */{len(data)}"
