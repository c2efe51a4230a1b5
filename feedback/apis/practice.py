"""The practice round on gold pairs kept for practice."""

from __future__ import annotations


from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
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
from feedback.models import Campaign, Pair
from feedback.roles import CanLabel

# --- practice round --------------------------------------------------------------------------------


PRACTICE_ROUND_SIZE = 5


def _practice_campaign(campaign_id: int, request: Request) -> Campaign:
    try:
        campaign = selectors.campaign_for_labelling(campaign_id=campaign_id, user=request.user)
    except Campaign.DoesNotExist:
        raise exceptions.NotFound(f"No campaign with id {campaign_id}.") from None
    if not services.campaign_may_label(campaign, request.user):
        raise exceptions.PermissionDenied(
            f"Campaign '{campaign.name}' is open only to invited annotators."
        )
    return campaign


class PracticeListApi(APIView):
    """A short practice round: gold pairs kept for practice, with left/right drawn per call.
    Answers are checked (not stored) by the practice check endpoint."""

    permission_classes = [IsAuthenticated, CanLabel]

    @extend_schema(
        responses={
            200: inline_serializer(
                "PracticeRound",
                {
                    "items": inline_serializer(
                        "PracticeItem",
                        {
                            "pair_id": serializers.IntegerField(),
                            "left": ClipSerializer(),
                            "right": ClipSerializer(),
                        },
                        many=True,
                    )
                },
            ),
            403: ProblemSerializer,
            404: ProblemSerializer,
        }
    )
    def get(self, request: Request, campaign_id: int) -> Response:
        import random

        campaign = _practice_campaign(campaign_id, request)
        pairs = list(
            campaign.pairs.filter(is_practice=True)
            .select_related("segment_a", "segment_b")
            .order_by("id")[:PRACTICE_ROUND_SIZE]
        )
        rng = random.SystemRandom()
        items = []
        for pair in pairs:
            left, right = (pair.segment_a, pair.segment_b)
            if rng.random() < 0.5:
                left, right = right, left
            items.append(
                {"pair_id": pair.pk, "left": _clip(left, request), "right": _clip(right, request)}
            )
        return Response({"items": items})


class PracticeCheckApi(APIView):
    """Check a practice answer: says whether it matches the known better clip. Nothing stored."""

    permission_classes = [IsAuthenticated, CanLabel]

    class PracticeAnswerSerializer(serializers.Serializer):
        preference = serializers.ChoiceField(choices=["left", "right", "equal", "cant_tell"])
        left_segment_id = serializers.IntegerField(min_value=1)

    @extend_schema(
        request=PracticeAnswerSerializer,
        responses={
            200: inline_serializer(
                "PracticeVerdict",
                {
                    "correct": serializers.BooleanField(),
                    "better": serializers.CharField(),
                    "message": serializers.CharField(),
                },
            ),
            400: ProblemSerializer,
            404: ProblemSerializer,
        },
    )
    def post(self, request: Request, campaign_id: int, pair_id: int) -> Response:
        data = _validated(self.PracticeAnswerSerializer, request)
        campaign = _practice_campaign(campaign_id, request)
        try:
            pair = campaign.pairs.get(pk=pair_id, is_practice=True)
        except Pair.DoesNotExist:
            raise exceptions.NotFound(f"No practice pair {pair_id} in this campaign.") from None
        if data["left_segment_id"] not in (pair.segment_a_id, pair.segment_b_id):
            raise exceptions.ValidationError(
                {
                    "left_segment_id": [
                        f"segment {data['left_segment_id']} is not part of practice pair {pair_id}."
                    ]
                }
            )
        better_segment = pair.segment_a_id if pair.gold_preference == "a" else pair.segment_b_id
        better = "left" if better_segment == data["left_segment_id"] else "right"
        correct = data["preference"] == better
        message = (
            f"Right: the {better} clip is the better one."
            if correct
            else f"Not quite: the {better} clip is the better one here. Look again before the real pairs."
        )
        return Response({"correct": correct, "better": better, "message": message})
