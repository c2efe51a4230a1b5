"""Importing trajectories and reading their segments."""

from __future__ import annotations


from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback import selectors, services
from feedback.services.trajectories import default_segment_length
from feedback.apis.common import (
    ProblemSerializer,
    _validated,
)
from feedback.models import PolicyVersion, Trajectory
from feedback.roles import IsPrefLabAdmin, can_research
from feedback.storage import TrajectoryFormatError, read_npz

# --- trajectories ------------------------------------------------------------------------------


class SegmentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    clip_status = serializers.CharField()
    clip_error = serializers.CharField()
    true_return = serializers.FloatField(allow_null=True)


class TrajectoryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    env_id = serializers.CharField(source="env.env_id")
    policy = serializers.CharField(source="policy.name")
    seed = serializers.IntegerField(allow_null=True)
    length = serializers.IntegerField()
    has_rewards = serializers.BooleanField()
    true_return = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()
    segments = SegmentOutputSerializer(many=True)


class TrajectoryCreateApi(APIView):
    """Import a trajectory as a ``.npz`` (multipart field ``file``). Admins only.

    The archive holds ``observations`` (T, …), ``actions`` (T, …), and optionally
    ``rewards`` (T,), ``terminations`` (T,) and RGB ``frames`` (T, H, W, 3) uint8. With
    frames, clips are rendered in the background and segments become labelable once ready.
    """

    permission_classes = [IsAuthenticated, IsPrefLabAdmin]
    parser_classes = [MultiPartParser, FormParser]

    class TrajectoryInputSerializer(serializers.Serializer):
        file = serializers.FileField()
        env_id = serializers.RegexField(
            r"^[A-Za-z0-9_./:-]+-v\d+$",
            max_length=200,
            error_messages={
                "invalid": "must be a Gymnasium id with its version, e.g. 'Hopper-v5'."
            },
        )
        policy = serializers.RegexField(
            r"^[\w.:-]+$",
            max_length=200,
            default="uploaded",
            error_messages={"invalid": "may only hold letters, digits, '_', '.', ':' and '-'."},
        )
        seed = serializers.IntegerField(
            required=False, allow_null=True, min_value=0, max_value=2**63 - 1
        )
        segment_length = serializers.IntegerField(required=False, min_value=2, max_value=10_000)

    @extend_schema(
        request={"multipart/form-data": TrajectoryInputSerializer},
        responses={
            201: TrajectoryOutputSerializer,
            400: ProblemSerializer,
            403: ProblemSerializer,
            413: ProblemSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        upload = request.FILES.get("file")
        limit = settings.PREFLAB_MAX_UPLOAD_BYTES
        if upload is not None and upload.size > limit:
            return Response(
                {
                    "detail": f"The upload is {upload.size} bytes; the limit is {limit} bytes "
                    "(PREFLAB_MAX_UPLOAD_BYTES)."
                },
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        data = _validated(self.TrajectoryInputSerializer, request)
        try:
            arrays = read_npz(data["file"], max_unpacked_bytes=settings.PREFLAB_MAX_UNPACKED_BYTES)
        except TrajectoryFormatError as exc:
            raise exceptions.ValidationError({"file": [str(exc)]}) from None
        segment_length = data.get("segment_length") or default_segment_length()
        if not services.segment_bounds(length=arrays.length, segment_length=segment_length):
            # Stored, it would hold no segment: nothing to show, nothing to learn from.
            raise exceptions.ValidationError(
                {
                    "file": [
                        f"The trajectory has {arrays.length} steps, fewer than half a segment of "
                        f"{segment_length}; upload a longer one or pass a smaller segment_length."
                    ]
                }
            )
        with transaction.atomic():
            env = services.environment_get_or_create(env_id=data["env_id"])
            policy = services.policy_get_or_create(
                env=env, name=data["policy"], kind=PolicyVersion.Kind.UPLOADED
            )
            trajectory = services.trajectory_create(
                env=env,
                policy=policy,
                arrays=arrays,
                segment_length=segment_length,
                source=Trajectory.Source.UPLOAD,
                seed=data.get("seed"),
                created_by=request.user,
            )
        trajectory = selectors.trajectory_with_segments(trajectory_id=trajectory.pk)
        return Response(TrajectoryOutputSerializer(trajectory).data, status=status.HTTP_201_CREATED)


class TrajectoryDetailApi(APIView):
    """A trajectory and its segments' render status. Researchers and admins."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: TrajectoryOutputSerializer, 403: ProblemSerializer, 404: ProblemSerializer}
    )
    def get(self, request: Request, trajectory_id: int) -> Response:
        if not can_research(request.user):
            raise exceptions.PermissionDenied("Only researchers and admins can read trajectories.")
        try:
            trajectory = selectors.trajectory_with_segments(trajectory_id=trajectory_id)
        except Trajectory.DoesNotExist:
            raise exceptions.NotFound(f"No trajectory with id {trajectory_id}.") from None
        return Response(TrajectoryOutputSerializer(trajectory).data)
