"""The annotation protocol: campaigns, leasing the next pair, recording judgements."""

from __future__ import annotations

import math
import re
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
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

# --- input checks for the hot endpoints --------------------------------------------------------
#
# Profiled under load (issue 3), building a DRF serializer per request (it deep-copies its
# declared fields) cost about as much CPU as the request's SQL. The two labelling endpoints
# check their few JSON fields here instead, with DRF's messages and error shape, so answers
# are the same byte for byte; the serializers below still document the API, and still
# validate anything that is not a parsed JSON object (form posts).

_REQUIRED = "This field is required."
_NULL = "This field may not be null."
_TOO_LONG = "String value too large."
_DECIMAL_TAIL = re.compile(r"\.0*\s*$")  # DRF's IntegerField accepts "1.0" as 1


def _choice(value: Any, choices: frozenset[str]) -> str:
    if value is None:
        raise _FieldError(_NULL)
    if str(value) not in choices:
        raise _FieldError(f'"{value}" is not a valid choice.')
    return str(value)


def _integer(value: Any, *, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, str) and len(value) > 1000:
        raise _FieldError(_TOO_LONG)
    try:
        number = int(_DECIMAL_TAIL.sub("", str(value)))
    except (ValueError, TypeError):
        raise _FieldError("A valid integer is required.") from None
    if maximum is not None and number > maximum:
        raise _FieldError(f"Ensure this value is less than or equal to {maximum}.")
    if number < minimum:
        raise _FieldError(f"Ensure this value is greater than or equal to {minimum}.")
    return number


def _unit_float(value: Any) -> float:
    if isinstance(value, str) and len(value) > 1000:
        raise _FieldError(_TOO_LONG)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _FieldError("A valid number is required.") from None
    except OverflowError:
        raise _FieldError("Integer value too large to convert to float") from None
    if not math.isfinite(number):  # NaN would pass both bounds below
        raise _FieldError("A valid number is required.")
    if number > 1.0:
        raise _FieldError("Ensure this value is less than or equal to 1.0.")
    if number < 0.0:
        raise _FieldError("Ensure this value is greater than or equal to 0.0.")
    return number


class _FieldError(Exception):
    def __init__(self, detail: Any) -> None:
        super().__init__(detail)
        self.detail = detail


def _json_object(request: Request) -> dict[str, Any] | None:
    """The body when it is a parsed JSON object; None when DRF's serializer must decide."""
    data = request.data
    if data is not None and not isinstance(data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["The body must be a JSON object."]})
    return data if type(data) is dict else None


def _next_exclude(request: Request) -> list[int]:
    data = _json_object(request)
    if data is None:
        return list(_validated(CampaignNextApi.NextInputSerializer, request)["exclude"])
    return exclude_ids(data)


def exclude_ids(data: dict[str, Any]) -> list[int]:
    """``exclude`` of a next request, checked as NextInputSerializer would."""
    value = data.get("exclude", [])
    try:
        if value is None:
            raise _FieldError([_NULL])
        if isinstance(value, (str, dict)) or not isinstance(value, list):
            raise _FieldError([f'Expected a list of items but got type "{type(value).__name__}".'])
        ids, errors = [], {}
        for index, item in enumerate(value):
            try:
                if item is None:
                    raise _FieldError(_NULL)
                ids.append(_integer(item, minimum=1))
            except _FieldError as exc:
                errors[index] = [exc.detail]
        if errors:
            raise _FieldError(errors)
        if len(ids) > MAX_EXCLUDE:
            raise _FieldError([f"Ensure this field has no more than {MAX_EXCLUDE} elements."])
    except _FieldError as exc:
        raise exceptions.ValidationError({"exclude": exc.detail}) from None
    return ids


_PREFERENCES = frozenset(["left", "right", "equal", "cant_tell"])
_DESIRABILITIES = frozenset(Judgement.Desirability.values)


def _judgement_input(request: Request) -> dict[str, Any]:
    data = _json_object(request)
    if data is None:
        return _validated(JudgementApi.JudgementInputSerializer, request)
    return judgement_fields(data)


def judgement_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A judgement's fields, checked as JudgementInputSerializer would."""
    out: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, choices in (("preference", _PREFERENCES), ("left_desirability", _DESIRABILITIES),
                          ("right_desirability", _DESIRABILITIES)):
        try:
            if name not in data:
                raise _FieldError(_REQUIRED)
            out[name] = _choice(data[name], choices)
        except _FieldError as exc:
            errors[name] = [exc.detail]
    for name, check in (("confidence", _unit_float),
                        ("elapsed_ms", lambda v: _integer(v, minimum=0, maximum=MAX_ELAPSED_MS))):
        if name not in data:
            continue
        try:
            out[name] = None if data[name] is None else check(data[name])
        except _FieldError as exc:
            errors[name] = [exc.detail]
    if errors:
        raise exceptions.ValidationError(errors)
    return out


def _next_wanted(request: Request) -> list[int] | None:
    """``next`` of a judgement body: None when not asked for, else the ids to exclude.

    ``"next": {"exclude": [...]}`` (or ``true``, excluding nothing) asks for the next lease
    of the same campaign in the judgement's response, saving the client a request per label.
    """
    data = request.data
    if type(data) is not dict or data.get("next") in (None, False):
        return None
    value = data["next"]
    if value is True:
        return []
    if not isinstance(value, dict):
        raise exceptions.ValidationError(
            {"next": ['Expected an object such as {"exclude": [12]}, or true.']}
        )
    try:
        return exclude_ids(value)
    except exceptions.ValidationError as exc:
        raise exceptions.ValidationError({"next": exc.detail}) from None


MAX_EXCLUDE = 20
# The labelling endpoints answer JSON only (no browsable-API page): content negotiation was a
# measurable share of their CPU under load.
HOT_RENDERERS = [JSONRenderer]
MAX_ELAPSED_MS = 24 * 3600 * 1000


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
    renderer_classes = HOT_RENDERERS

    class NextInputSerializer(serializers.Serializer):
        exclude = serializers.ListField(
            child=serializers.IntegerField(min_value=1), required=False, default=list, max_length=MAX_EXCLUDE
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
        exclude = _next_exclude(request)
        try:
            lease = next_lease(request, campaign_id=campaign_id, exclude=exclude)
        except services.CampaignClosed as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(lease)


def next_lease(
    request: Request, *, campaign_id: int, exclude: list[int], campaign: Campaign | None = None
) -> dict[str, Any] | None:
    """The caller's next lease in the campaign as the API shows it; None when none is left.

    ``campaign``: the campaign row with ``may_label`` for the caller, when already read.
    Raises NotFound (no such campaign), PermissionDenied (not invited) and
    ``services.CampaignClosed``.
    """
    if campaign is None:
        try:
            campaign = selectors.campaign_for_labelling(campaign_id=campaign_id, user=request.user)
        except Campaign.DoesNotExist:
            raise exceptions.NotFound(f"No campaign with id {campaign_id}.") from None
    try:
        assignment = services.assignment_lease_next(campaign=campaign, annotator=request.user, exclude_ids=exclude)
    except services.NotInvited as exc:
        raise exceptions.PermissionDenied(str(exc)) from None
    if assignment is None:
        return None
    if not Assignment.pair.is_cached(assignment) or not Pair.segment_a.is_cached(assignment.pair):
        # A resumed lease: its pair's segments are not loaded yet.
        assignment = selectors.assignment_with_segments(assignment_id=assignment.pk)
    return lease_payload(assignment, request)


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

    With ``"next": {"exclude": [...]}`` in the body, a stored answer (201 or 200) also
    leases the caller's next pair of the same campaign, as ``POST next`` with that body
    would, and returns it as ``next`` (null when nothing is left; then ``next_detail`` says
    why if the campaign is closed to the caller). One request per label instead of two;
    the judgement is committed before the lease is taken, so a failed lease never loses it.
    """

    permission_classes = [IsAuthenticated, CanLabel]
    renderer_classes = HOT_RENDERERS

    class JudgementInputSerializer(serializers.Serializer):
        preference = serializers.ChoiceField(choices=["left", "right", "equal", "cant_tell"])
        left_desirability = serializers.ChoiceField(choices=Judgement.Desirability.values)
        right_desirability = serializers.ChoiceField(choices=Judgement.Desirability.values)
        confidence = serializers.FloatField(
            required=False, allow_null=True, min_value=0.0, max_value=1.0
        )
        elapsed_ms = serializers.IntegerField(
            required=False, allow_null=True, min_value=0, max_value=MAX_ELAPSED_MS
        )
        next = serializers.JSONField(
            required=False,
            help_text='Also lease the next pair of this campaign: {"exclude": [assignment ids]} or true.',
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
        next = LeaseSerializer(required=False, allow_null=True, help_text="Only when asked for with next.")
        next_detail = serializers.CharField(required=False, help_text="Why next is null, when not just empty.")

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
        data = _judgement_input(request)
        next_exclude = _next_wanted(request)
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
                with_campaign=next_exclude is not None,
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
        body = self._output(judgement)
        if next_exclude is not None:
            body.update(self._next(request, judgement=judgement, exclude=next_exclude))
        return Response(body, status=201 if created else 200)

    @staticmethod
    def _next(request: Request, *, judgement: Judgement, exclude: list[int]) -> dict[str, Any]:
        campaign = judgement.leasing_campaign  # read with the judgement (with_campaign)
        try:
            return {"next": next_lease(request, campaign_id=campaign.pk, exclude=exclude, campaign=campaign)}
        except (services.CampaignClosed, exceptions.APIException) as exc:
            return {"next": None, "next_detail": str(getattr(exc, "detail", exc))}

    @staticmethod
    def _output(judgement: Judgement) -> dict[str, Any]:
        return {
            "id": judgement.pk,
            "assignment_id": judgement.assignment_id,
            "pair_id": judgement.pair_id,
            **to_screen(judgement),
            "created_at": judgement.created_at,
        }
