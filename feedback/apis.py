"""The annotation protocol, version 1: a public REST API (see /api/schema/).

Views are thin adapters: parse and validate input, call one service or selector, shape
the output. Every error body has a ``detail`` string that names the problem.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from feedback import selectors, services
from feedback.models import Assignment, Campaign, Judgement, Pair, PolicyVersion, Segment, Trajectory
from feedback.roles import CanLabel, CanResearch, HasAnyRole, IsPrefLabAdmin, can_research, user_roles
from feedback.services.annotation import AnnotationError, to_screen
from feedback.storage import TrajectoryFormatError, read_npz


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


# --- auth ------------------------------------------------------------------------------------


class TokenApi(ObtainAuthToken):
    """Username and password in, API token out."""

    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle]
    throttle_scope = "anon"

    @extend_schema(
        request=inline_serializer(
            "TokenRequest", {"username": serializers.CharField(), "password": serializers.CharField()}
        ),
        responses={
            200: inline_serializer("TokenResponse", {"token": serializers.CharField()}),
            400: ProblemSerializer,
        },
        auth=[],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)

    def get_throttles(self) -> list[Any]:
        # Throttling needs a cache-backed rate only in production; keep tests deterministic.
        return [] if settings.MODE != "production" else super().get_throttles()


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses=inline_serializer(
            "Me",
            {"id": serializers.IntegerField(), "username": serializers.CharField(),
             "roles": serializers.ListField(child=serializers.CharField())},
        )
    )
    def get(self, request: Request) -> Response:
        user = request.user
        return Response({"id": user.pk, "username": user.get_username(), "roles": sorted(user_roles(user))})


# --- campaigns -------------------------------------------------------------------------------


class CampaignOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    env_id = serializers.CharField(source="env.env_id")
    instructions = serializers.CharField()
    status = serializers.CharField()
    segment_length = serializers.IntegerField()
    overlap = serializers.IntegerField()
    pair_count = serializers.IntegerField()
    labels_wanted = serializers.IntegerField()
    label_count = serializers.IntegerField()
    my_label_count = serializers.IntegerField()


class CampaignListApi(APIView):
    """Campaigns the caller may label (annotators) or read (researchers, admins), with progress."""

    permission_classes = [IsAuthenticated, HasAnyRole]

    @extend_schema(responses=CampaignOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        campaigns = selectors.campaigns_with_progress(user=request.user)
        return Response(CampaignOutputSerializer(campaigns, many=True).data)


class CampaignDetailApi(APIView):
    permission_classes = [IsAuthenticated, HasAnyRole]

    @extend_schema(responses={200: CampaignOutputSerializer, 404: ProblemSerializer})
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = _get_campaign(campaign_id, request)
        return Response(CampaignOutputSerializer(campaign).data)


def _get_campaign(campaign_id: int, request: Request) -> Campaign:
    try:
        return selectors.campaign_get_for_user(campaign_id=campaign_id, user=request.user)
    except Campaign.DoesNotExist:
        raise exceptions.NotFound(f"No campaign with id {campaign_id} is open to you.") from None


class ClipSerializer(serializers.Serializer):
    segment_id = serializers.IntegerField()
    clip_url = serializers.CharField()
    length = serializers.IntegerField()
    fps = serializers.IntegerField()


class LeaseSerializer(serializers.Serializer):
    assignment_id = serializers.IntegerField()
    campaign_id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    left = ClipSerializer()
    right = ClipSerializer()


def _clip(segment: Segment, request: Request) -> dict[str, Any]:
    return {
        "segment_id": segment.pk,
        "clip_url": request.build_absolute_uri(reverse("feedback:clip", args=[segment.pk])),
        "length": segment.end - segment.start,
        "fps": segment.fps,
    }


def lease_payload(assignment: Assignment, request: Request) -> dict[str, Any]:
    pair = assignment.pair
    left, right = (
        (pair.segment_a, pair.segment_b) if assignment.left_is_a else (pair.segment_b, pair.segment_a)
    )
    return {
        "assignment_id": assignment.pk,
        "campaign_id": pair.campaign_id,
        "expires_at": assignment.expires_at,
        "left": _clip(left, request),
        "right": _clip(right, request),
    }


class CampaignNextApi(APIView):
    """Lease the next pair to the caller. 204 when nothing is left for them.

    An unanswered lease the caller already holds is returned first, renewed; list the
    assignment ids already on screen in ``exclude`` to get a different one (prefetch).
    """

    permission_classes = [IsAuthenticated, CanLabel]

    class NextInputSerializer(serializers.Serializer):
        exclude = serializers.ListField(
            child=serializers.IntegerField(min_value=1), required=False, default=list, max_length=20
        )

    @extend_schema(
        request=NextInputSerializer,
        responses={
            200: LeaseSerializer,
            204: OpenApiResponse(description="No pair is left for you in this campaign."),
            403: ProblemSerializer,
            404: ProblemSerializer,
            409: ProblemSerializer,
        },
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        data = _validated(self.NextInputSerializer, request)
        try:
            campaign = selectors.campaign_for_labelling(campaign_id=campaign_id, user=request.user)
        except Campaign.DoesNotExist:
            raise exceptions.NotFound(f"No campaign with id {campaign_id}.") from None
        try:
            assignment = services.assignment_lease_next(
                campaign=campaign, annotator=request.user, exclude_ids=data["exclude"]
            )
        except services.NotInvited as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        except services.CampaignClosed as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        if not Assignment.pair.is_cached(assignment) or not Pair.segment_a.is_cached(assignment.pair):
            # A resumed lease: its pair's segments are not loaded yet.
            assignment = selectors.assignment_with_segments(assignment_id=assignment.pk)
        return Response(lease_payload(assignment, request))


def _validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    if request.data is not None and not isinstance(request.data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["The body must be a JSON object."]})
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --- judgements ------------------------------------------------------------------------------


class JudgementApi(APIView):
    """Record the caller's answer for an assignment (screen terms: left/right).

    201 on first submit; 200 with the same body on an identical resubmit; 409 if a
    different answer was already recorded; 403 for someone else's assignment; 410 when the
    lease expired and another annotator now holds the pair.
    """

    permission_classes = [IsAuthenticated, CanLabel]

    class JudgementInputSerializer(serializers.Serializer):
        preference = serializers.ChoiceField(choices=["left", "right", "equal", "cant_tell"])
        left_desirability = serializers.ChoiceField(choices=Judgement.Desirability.values)
        right_desirability = serializers.ChoiceField(choices=Judgement.Desirability.values)
        confidence = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
        elapsed_ms = serializers.IntegerField(
            required=False, allow_null=True, min_value=0, max_value=24 * 3600 * 1000
        )

        def validate_confidence(self, value: float | None) -> float | None:
            if value is not None and value != value:  # NaN passes min/max checks
                raise serializers.ValidationError("must be a number between 0 and 1, not NaN.")
            return value

    class JudgementOutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        assignment_id = serializers.IntegerField()
        pair_id = serializers.IntegerField()
        preference = serializers.CharField()
        left_desirability = serializers.CharField()
        right_desirability = serializers.CharField()
        confidence = serializers.FloatField(allow_null=True)
        elapsed_ms = serializers.IntegerField(allow_null=True)
        created_at = serializers.DateTimeField()

    @extend_schema(
        request=JudgementInputSerializer,
        responses={
            200: JudgementOutputSerializer, 201: JudgementOutputSerializer, 400: ProblemSerializer, 403: ProblemSerializer,
            404: ProblemSerializer, 409: ProblemSerializer, 410: ProblemSerializer,
        },
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        data = _validated(self.JudgementInputSerializer, request)
        answer = services.JudgementInput(
            preference=data["preference"],
            left_desirability=data["left_desirability"],
            right_desirability=data["right_desirability"],
            confidence=data.get("confidence"),
            elapsed_ms=data.get("elapsed_ms"),
        )
        try:
            judgement, created = services.judgement_record(
                assignment_id=assignment_id, annotator=request.user, answer=answer
            )
        except Assignment.DoesNotExist:
            raise exceptions.NotFound(f"No assignment with id {assignment_id}.") from None
        except services.NotYourAssignment as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        except services.AssignmentGone as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_410_GONE)
        except services.JudgementConflict as exc:
            body = {"detail": str(exc), "existing": self._output(exc.existing)}
            return Response(body, status=status.HTTP_409_CONFLICT)
        except AnnotationError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(self._output(judgement), status=201 if created else 200)

    @staticmethod
    def _output(judgement: Judgement) -> dict[str, Any]:
        return {
            "id": judgement.pk,
            "assignment_id": judgement.assignment_id,
            "pair_id": judgement.pair_id,
            **to_screen(judgement),
            "created_at": judgement.created_at,
        }


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
            r"^[A-Za-z0-9_./:-]+-v\d+$", max_length=200,
            error_messages={"invalid": "must be a Gymnasium id with its version, e.g. 'Hopper-v5'."},
        )
        policy = serializers.RegexField(
            r"^[\w.:-]+$", max_length=200, default="uploaded",
            error_messages={"invalid": "may only hold letters, digits, '_', '.', ':' and '-'."},
        )
        seed = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**63 - 1)
        segment_length = serializers.IntegerField(required=False, min_value=2, max_value=10_000)

    @extend_schema(
        request={"multipart/form-data": TrajectoryInputSerializer},
        responses={201: TrajectoryOutputSerializer, 400: ProblemSerializer, 403: ProblemSerializer,
                   413: ProblemSerializer},
    )
    def post(self, request: Request) -> Response:
        upload = request.FILES.get("file")
        limit = settings.PREFLAB_MAX_UPLOAD_BYTES
        if upload is not None and upload.size > limit:
            return Response(
                {"detail": f"The upload is {upload.size} bytes; the limit is {limit} bytes "
                 "(PREFLAB_MAX_UPLOAD_BYTES)."},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        data = _validated(self.TrajectoryInputSerializer, request)
        try:
            arrays = read_npz(data["file"], max_unpacked_bytes=settings.PREFLAB_MAX_UNPACKED_BYTES)
        except TrajectoryFormatError as exc:
            raise exceptions.ValidationError({"file": [str(exc)]}) from None
        segment_length = data.get("segment_length") or settings.PREFLAB_DEFAULT_SEGMENT_LENGTH
        if not services.segment_bounds(length=arrays.length, segment_length=segment_length):
            # Stored, it would hold no segment: nothing to show, nothing to learn from.
            raise exceptions.ValidationError({"file": [
                f"The trajectory has {arrays.length} steps, fewer than half a segment of "
                f"{segment_length}; upload a longer one or pass a smaller segment_length."
            ]})
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

    @extend_schema(responses={200: TrajectoryOutputSerializer, 403: ProblemSerializer, 404: ProblemSerializer})
    def get(self, request: Request, trajectory_id: int) -> Response:
        if not can_research(request.user):
            raise exceptions.PermissionDenied("Only researchers and admins can read trajectories.")
        try:
            trajectory = selectors.trajectory_with_segments(trajectory_id=trajectory_id)
        except Trajectory.DoesNotExist:
            raise exceptions.NotFound(f"No trajectory with id {trajectory_id}.") from None
        return Response(TrajectoryOutputSerializer(trajectory).data)



# --- research: quality statistics, pairs, exclusions ----------------------------------------------


def _research_campaign(campaign_id: int) -> Campaign:
    try:
        return Campaign.objects.select_related("env").get(pk=campaign_id)
    except Campaign.DoesNotExist:
        raise exceptions.NotFound(f"No campaign with id {campaign_id}.") from None


class CampaignStatsApi(APIView):
    """Quality statistics of a campaign: agreement (Krippendorff's α, pairwise), position
    bias, distributions, labels over time, intransitive cycles, and a row per annotator
    with speed, gold accuracy, noise estimate and flags. Researchers and admins."""

    permission_classes = [IsAuthenticated, CanResearch]

    @extend_schema(responses={200: OpenApiResponse(description="Statistics, see the dashboard."),
                              403: ProblemSerializer, 404: ProblemSerializer})
    def get(self, request: Request, campaign_id: int) -> Response:
        from feedback.statistics import campaign_statistics

        return Response(campaign_statistics(_research_campaign(campaign_id)))


class CampaignPairsApi(APIView):
    """The campaign's pairs, 50 a page, with vote counts, majority and agreement."""

    permission_classes = [IsAuthenticated, CanResearch]
    page_size = 50

    @extend_schema(responses={200: OpenApiResponse(description="A page of pairs."), 403: ProblemSerializer})
    def get(self, request: Request, campaign_id: int) -> Response:
        from feedback.statistics import _majority

        campaign = _research_campaign(campaign_id)
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            raise exceptions.ValidationError({"page": ["must be a positive integer."]}) from None
        pairs = campaign.pairs.order_by("-priority", "id")
        count = pairs.count()
        chunk = list(pairs[(page - 1) * self.page_size: page * self.page_size])
        votes: dict[int, list[str]] = {}
        for pair_id, preference in Judgement.objects.filter(pair__in=chunk).values_list("pair_id", "preference"):
            votes.setdefault(pair_id, []).append(preference)
        results = []
        for pair in chunk:
            mine = votes.get(pair.pk, [])
            majority = _majority(mine)
            decided = [v for v in mine if v != "cant_tell"]
            results.append({
                "id": pair.pk, "is_gold": pair.is_gold, "priority": pair.priority, "selector": pair.selector,
                "model_version": pair.model_version, "votes": len(mine), "majority": majority,
                "agreement": (sum(v == majority for v in decided) / len(decided)) if decided and majority else None,
            })
        next_page = page + 1 if page * self.page_size < count else None
        return Response({"count": count, "next_page": next_page, "results": results})


class PairDetailApi(APIView):
    """One pair with both segments (true returns included: researchers only) and every vote."""

    permission_classes = [IsAuthenticated, CanResearch]

    @extend_schema(responses={200: OpenApiResponse(description="The pair and its votes."),
                              403: ProblemSerializer, 404: ProblemSerializer})
    def get(self, request: Request, pair_id: int) -> Response:
        from feedback.statistics import pair_votes

        try:
            pair = Pair.objects.select_related("segment_a", "segment_b").get(pk=pair_id)
        except Pair.DoesNotExist:
            raise exceptions.NotFound(f"No pair with id {pair_id}.") from None

        def segment(s: Segment) -> dict[str, Any]:
            return {**_clip(s, request), "id": s.pk, "trajectory_id": s.trajectory_id, "start": s.start,
                    "end": s.end, "true_return": s.true_return}

        return Response({
            "id": pair.pk, "campaign_id": pair.campaign_id, "is_gold": pair.is_gold,
            "gold_preference": pair.gold_preference or None, "selector": pair.selector,
            "model_version": pair.model_version, "segment_a": segment(pair.segment_a),
            "segment_b": segment(pair.segment_b), "votes": pair_votes(pair.pk),
        })


class CampaignExclusionApi(APIView):
    """Exclude an annotator's labels from a campaign's training data, exports and agreement
    statistics, or include them again. The labels are kept either way."""

    permission_classes = [IsAuthenticated, CanResearch]

    class ExclusionInputSerializer(serializers.Serializer):
        annotator_id = serializers.IntegerField(min_value=1)
        excluded = serializers.BooleanField()
        reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")

    @extend_schema(
        request=ExclusionInputSerializer,
        responses={200: inline_serializer("ExclusionOutput", {"annotator_id": serializers.IntegerField(),
                                                              "excluded": serializers.BooleanField()}),
                   400: ProblemSerializer, 403: ProblemSerializer, 404: ProblemSerializer},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        from django.contrib.auth import get_user_model

        data = _validated(self.ExclusionInputSerializer, request)
        campaign = _research_campaign(campaign_id)
        try:
            annotator = get_user_model().objects.get(pk=data["annotator_id"])
        except get_user_model().DoesNotExist:
            raise exceptions.NotFound(f"No user with id {data['annotator_id']}.") from None
        excluded = services.annotator_exclusion_set(
            campaign=campaign, annotator=annotator, excluded=data["excluded"], by=request.user,
            reason=data["reason"],
        )
        return Response({"annotator_id": annotator.pk, "excluded": excluded})


# --- practice round --------------------------------------------------------------------------------


PRACTICE_ROUND_SIZE = 5


def _practice_campaign(campaign_id: int, request: Request) -> Campaign:
    try:
        campaign = selectors.campaign_for_labelling(campaign_id=campaign_id, user=request.user)
    except Campaign.DoesNotExist:
        raise exceptions.NotFound(f"No campaign with id {campaign_id}.") from None
    if not services.campaign_may_label(campaign, request.user):
        raise exceptions.PermissionDenied(f"Campaign '{campaign.name}' is open only to invited annotators.")
    return campaign


class PracticeListApi(APIView):
    """A short practice round: gold pairs kept for practice, with left/right drawn per call.
    Answers are checked (not stored) by the practice check endpoint."""

    permission_classes = [IsAuthenticated, CanLabel]

    @extend_schema(responses={200: inline_serializer("PracticeRound", {
        "items": inline_serializer("PracticeItem", {"pair_id": serializers.IntegerField(),
                                                    "left": ClipSerializer(), "right": ClipSerializer()},
                                   many=True)}), 403: ProblemSerializer, 404: ProblemSerializer})
    def get(self, request: Request, campaign_id: int) -> Response:
        import random

        campaign = _practice_campaign(campaign_id, request)
        pairs = list(
            campaign.pairs.filter(is_practice=True).select_related("segment_a", "segment_b")
            .order_by("id")[:PRACTICE_ROUND_SIZE]
        )
        rng = random.SystemRandom()
        items = []
        for pair in pairs:
            left, right = (pair.segment_a, pair.segment_b)
            if rng.random() < 0.5:
                left, right = right, left
            items.append({"pair_id": pair.pk, "left": _clip(left, request), "right": _clip(right, request)})
        return Response({"items": items})


class PracticeCheckApi(APIView):
    """Check a practice answer: says whether it matches the known better clip. Nothing stored."""

    permission_classes = [IsAuthenticated, CanLabel]

    class PracticeAnswerSerializer(serializers.Serializer):
        preference = serializers.ChoiceField(choices=["left", "right", "equal", "cant_tell"])
        left_segment_id = serializers.IntegerField(min_value=1)

    @extend_schema(request=PracticeAnswerSerializer, responses={200: inline_serializer("PracticeVerdict", {
        "correct": serializers.BooleanField(), "better": serializers.CharField(),
        "message": serializers.CharField()}), 400: ProblemSerializer, 404: ProblemSerializer})
    def post(self, request: Request, campaign_id: int, pair_id: int) -> Response:
        data = _validated(self.PracticeAnswerSerializer, request)
        campaign = _practice_campaign(campaign_id, request)
        try:
            pair = campaign.pairs.get(pk=pair_id, is_practice=True)
        except Pair.DoesNotExist:
            raise exceptions.NotFound(f"No practice pair {pair_id} in this campaign.") from None
        if data["left_segment_id"] not in (pair.segment_a_id, pair.segment_b_id):
            raise exceptions.ValidationError(
                {"left_segment_id": [f"segment {data['left_segment_id']} is not part of practice pair {pair_id}."]}
            )
        better_segment = pair.segment_a_id if pair.gold_preference == "a" else pair.segment_b_id
        better = "left" if better_segment == data["left_segment_id"] else "right"
        correct = data["preference"] == better
        message = (
            f"Right: the {better} clip is the better one." if correct
            else f"Not quite: the {better} clip is the better one here. Look again before the real pairs."
        )
        return Response({"correct": correct, "better": better, "message": message})
