"""The annotation protocol: campaigns, leasing the next pair, recording judgements."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback import selectors, services
from feedback.apis.common import (
    ClipSerializer,
    ProblemSerializer,
    _clip,
    _validated,
)
from feedback.models import Assignment, Campaign, Judgement, Pair
from feedback.roles import SIMULATED, CanLabel, HasAnyRole
from feedback.services.annotation import AnnotationError, to_screen

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


class LeaseSerializer(serializers.Serializer):
    assignment_id = serializers.IntegerField()
    campaign_id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    left = ClipSerializer()
    right = ClipSerializer()


def lease_payload(assignment: Assignment, request: Request) -> dict[str, Any]:
    pair = assignment.pair
    left, right = (
        (pair.segment_a, pair.segment_b)
        if assignment.left_is_a
        else (pair.segment_b, pair.segment_a)
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
        if not Assignment.pair.is_cached(assignment) or not Pair.segment_a.is_cached(
            assignment.pair
        ):
            # A resumed lease: its pair's segments are not loaded yet.
            assignment = selectors.assignment_with_segments(assignment_id=assignment.pk)
        return Response(lease_payload(assignment, request))


# --- judgements ------------------------------------------------------------------------------


def _is_simulated(user: Any) -> bool:
    """Members of the ``simulated`` group are scripts (manage.py simulate_annotators). Token
    auth loads the flag with the token; a session caller costs one query."""
    flag = getattr(user, "_preflab_simulated", None)
    if flag is None:
        flag = user.groups.filter(name=SIMULATED).exists()
    return bool(flag)


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
        confidence = serializers.FloatField(
            required=False, allow_null=True, min_value=0.0, max_value=1.0
        )
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
            200: JudgementOutputSerializer,
            201: JudgementOutputSerializer,
            400: ProblemSerializer,
            403: ProblemSerializer,
            404: ProblemSerializer,
            409: ProblemSerializer,
            410: ProblemSerializer,
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
                assignment_id=assignment_id,
                annotator=request.user,
                answer=answer,
                is_simulated=_is_simulated(request.user),
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
