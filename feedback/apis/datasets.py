"""Dataset snapshots: create (a job), poll, list, download (streamed). Researchers and admins."""

from __future__ import annotations

import mimetypes
from typing import Any

from django.core.files.storage import default_storage
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.apis.common import ProblemSerializer, _validated
from feedback.datasets import selectors
from feedback.datasets.export import DatasetExportError
from feedback.datasets.filters import DatasetFilterError, DatasetFilters
from feedback.datasets.services import FORMATS, snapshot_create, snapshots_mark_stale
from feedback.models import DatasetSnapshot
from feedback.roles import CanResearch


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def _describe(snapshot: DatasetSnapshot, request: Request) -> dict[str, Any]:
    body = selectors.snapshot_describe(snapshot)
    body["url"] = request.build_absolute_uri(reverse("api-dataset", args=[snapshot.pk]))
    for name, meta in body["files"].items():
        meta["url"] = request.build_absolute_uri(reverse("api-dataset-file", args=[snapshot.pk, name]))
    return body


def _snapshot(snapshot_id: int) -> DatasetSnapshot:
    try:
        return selectors.snapshot_get(snapshot_id=snapshot_id)
    except DatasetSnapshot.DoesNotExist:
        raise exceptions.NotFound(f"No dataset snapshot with id {snapshot_id}.") from None


class DatasetListApi(APIView):
    """List snapshots (``?campaign=<id>`` to narrow), or ask for a new one: the export runs
    as a background job; poll the returned ``url`` for ``status`` and ``progress``."""

    permission_classes = [IsAuthenticated, CanResearch]

    class CreateSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        filters = serializers.JSONField()
        formats = serializers.ListField(
            child=serializers.ChoiceField(choices=FORMATS), required=False, default=["parquet"], max_length=4
        )

    @extend_schema(operation_id="v1_datasets_list",
                   responses={200: OpenApiResponse(description="Snapshots, newest first."), 403: ProblemSerializer})
    def get(self, request: Request) -> Response:
        campaign = request.query_params.get("campaign")
        try:
            campaign_id = int(campaign) if campaign else None
        except ValueError:
            raise exceptions.ValidationError({"campaign": ["must be a campaign id."]}) from None
        snapshots = selectors.snapshots_list(campaign_id=campaign_id)[:200]
        return Response({"results": [_describe(s, request) for s in snapshots]})

    @extend_schema(
        request=CreateSerializer,
        responses={202: OpenApiResponse(description="The queued snapshot."), 400: ProblemSerializer,
                   403: ProblemSerializer},
    )
    def post(self, request: Request) -> Response:
        data = _validated(self.CreateSerializer, request)
        try:
            filters = DatasetFilters.from_json(data["filters"])
            snapshot = snapshot_create(name=data["name"], filters=filters, formats=data["formats"],
                                       created_by=request.user)
        except (DatasetFilterError, DatasetExportError) as exc:
            raise exceptions.ValidationError({"filters" if isinstance(exc, DatasetFilterError) else
                                              "non_field_errors": [str(exc)]}) from None
        body = _describe(selectors.snapshot_get(snapshot_id=snapshot.pk), request)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class DatasetDetailApi(APIView):
    """A snapshot: status, progress, filters, counts, statistics, content hash and files."""

    permission_classes = [IsAuthenticated, CanResearch]

    @extend_schema(responses={200: OpenApiResponse(description="The snapshot."), 403: ProblemSerializer,
                              404: ProblemSerializer})
    def get(self, request: Request, snapshot_id: int) -> Response:
        # A poller must learn that a killed export failed, not watch it "run" forever.
        snapshots_mark_stale()
        return Response(_describe(_snapshot(snapshot_id), request))


class DatasetFileApi(APIView):
    """Download one of a snapshot's files, streamed from storage, the same bytes every time."""

    permission_classes = [IsAuthenticated, CanResearch]

    @extend_schema(responses={200: OpenApiResponse(description="The file."), 403: ProblemSerializer,
                              404: ProblemSerializer, 409: ProblemSerializer})
    def get(self, request: Request, snapshot_id: int, name: str) -> FileResponse:
        snapshot = _snapshot(snapshot_id)
        if snapshot.status != DatasetSnapshot.Status.SUCCEEDED:
            raise Conflict(f"Snapshot {snapshot_id} is {snapshot.status} ({snapshot.progress:.0%}); "
                           "download it once it succeeded.")
        meta = snapshot.files.get(name)
        if meta is None:
            raise exceptions.NotFound(
                f"Snapshot {snapshot_id} has no file {name!r}; it has {', '.join(sorted(snapshot.files))}.")
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if name.endswith((".parquet", ".jsonl")):
            content_type = "application/vnd.apache.parquet" if name.endswith(".parquet") else "application/jsonl"
        # FileResponse streams the file in blocks; the body is never built in memory.
        response = FileResponse(default_storage.open(meta["path"], "rb"), as_attachment=True,
                                filename=f"preflab-dataset-{snapshot_id}-{name}", content_type=content_type)
        response["Content-Length"] = str(meta["bytes"])
        response["ETag"] = f'"{meta["sha256"]}"'
        return response
