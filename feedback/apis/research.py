"""Research endpoints: quality statistics, pairs with their votes, annotator exclusions."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback import services
from feedback.apis.common import (
    ProblemSerializer,
    _clip,
    _validated,
)
from feedback.models import Campaign, Pair, Segment
from feedback.roles import CanResearch

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

    @extend_schema(
        responses={
            200: OpenApiResponse(description="Statistics, see the dashboard."),
            403: ProblemSerializer,
            404: ProblemSerializer,
        }
    )
    def get(self, request: Request, campaign_id: int) -> Response:
        from feedback.statistics import campaign_statistics

        return Response(campaign_statistics(_research_campaign(campaign_id)))


class CampaignPairsApi(APIView):
    """The campaign's pairs, 50 a page, with vote counts, majority and agreement."""

    permission_classes = [IsAuthenticated, CanResearch]

    @extend_schema(
        responses={200: OpenApiResponse(description="A page of pairs."), 403: ProblemSerializer}
    )
    def get(self, request: Request, campaign_id: int) -> Response:
        from feedback.statistics import campaign_pairs_page

        campaign = _research_campaign(campaign_id)
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            raise exceptions.ValidationError({"page": ["must be a positive integer."]}) from None
        return Response(campaign_pairs_page(campaign, page=page))


class PairDetailApi(APIView):
    """One pair with both segments (true returns included: researchers only) and every vote."""

    permission_classes = [IsAuthenticated, CanResearch]

    @extend_schema(
        responses={
            200: OpenApiResponse(description="The pair and its votes."),
            403: ProblemSerializer,
            404: ProblemSerializer,
        }
    )
    def get(self, request: Request, pair_id: int) -> Response:
        from feedback.statistics import pair_votes

        try:
            pair = Pair.objects.select_related("segment_a", "segment_b").get(pk=pair_id)
        except Pair.DoesNotExist:
            raise exceptions.NotFound(f"No pair with id {pair_id}.") from None

        def segment(s: Segment) -> dict[str, Any]:
            return {
                **_clip(s, request),
                "id": s.pk,
                "trajectory_id": s.trajectory_id,
                "start": s.start,
                "end": s.end,
                "true_return": s.true_return,
            }

        return Response(
            {
                "id": pair.pk,
                "campaign_id": pair.campaign_id,
                "is_gold": pair.is_gold,
                "gold_preference": pair.gold_preference or None,
                "selector": pair.selector,
                "model_version": pair.model_version,
                "segment_a": segment(pair.segment_a),
                "segment_b": segment(pair.segment_b),
                "votes": pair_votes(pair.pk),
            }
        )


class CampaignExclusionApi(APIView):
    """Exclude an annotator's labels from a campaign's training data, exports and agreement
    statistics, or include them again. The labels are kept either way."""

    permission_classes = [IsAuthenticated, CanResearch]

    class ExclusionInputSerializer(serializers.Serializer):
        annotator_id = serializers.IntegerField(min_value=1)
        excluded = serializers.BooleanField()
        reason = serializers.CharField(
            required=False, allow_blank=True, max_length=2000, default=""
        )

    @extend_schema(
        request=ExclusionInputSerializer,
        responses={
            200: inline_serializer(
                "ExclusionOutput",
                {
                    "annotator_id": serializers.IntegerField(),
                    "excluded": serializers.BooleanField(),
                },
            ),
            400: ProblemSerializer,
            403: ProblemSerializer,
            404: ProblemSerializer,
        },
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
            campaign=campaign,
            annotator=annotator,
            excluded=data["excluded"],
            by=request.user,
            reason=data["reason"],
        )
        return Response({"annotator_id": annotator.pk, "excluded": excluded})
