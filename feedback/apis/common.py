"""Shared pieces of the v1 API: error format, clip description, input validation."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from feedback.models import Segment


def _flatten(errors: Any, prefix: str = "") -> list[str]:
    if isinstance(errors, dict):
        out: list[str] = []
        for key, value in errors.items():
            name = key if key != "non_field_errors" else ""
            out += _flatten(value, f"{prefix}{name}: " if name else prefix)
        return out
    if isinstance(errors, list):
        return [message for item in errors for message in _flatten(item, prefix)]
    return [f"{prefix}{errors}"]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus a one-line ``detail`` for validation errors."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.ValidationError):
        errors = response.data
        response.data = {"detail": "Invalid input. " + " ".join(_flatten(errors)), "errors": errors}
    return response


class ProblemSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ClipSerializer(serializers.Serializer):
    segment_id = serializers.IntegerField()
    clip_url = serializers.CharField()
    length = serializers.IntegerField()
    fps = serializers.IntegerField()


def _clip(segment: Segment, request: Request) -> dict[str, Any]:
    return {
        "segment_id": segment.pk,
        "clip_url": clip_url(segment.pk, request),
        "length": segment.end - segment.start,
        "fps": segment.fps,
    }


_SENTINEL_ID = "918273645"


def clip_url(segment_id: int, request: Request) -> str:
    """The clip's absolute URL. ``reverse()`` walks the resolver and ``build_absolute_uri()``
    validates the host on every call; a lease names two clips and both calls cost a tenth of
    its CPU under load, so they run once per request (the URL with a sentinel id, cached on
    the request) and each clip's URL is that with its id put in."""
    parts = getattr(request, "_preflab_clip_url", None)
    if parts is None:
        template = request.build_absolute_uri(reverse("feedback:clip", args=[int(_SENTINEL_ID)]))
        head, found, tail = template.partition(_SENTINEL_ID)
        assert found and _SENTINEL_ID not in tail, template
        parts = request._preflab_clip_url = (head, tail)
    return f"{parts[0]}{segment_id}{parts[1]}"


def _validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    if request.data is not None and not isinstance(request.data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["The body must be a JSON object."]})
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
