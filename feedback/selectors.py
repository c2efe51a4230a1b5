"""Reads. Views and other apps read feedback data through these functions."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, F, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from feedback.models import Assignment, Campaign, Judgement, Pair, Segment, Trajectory
from feedback.roles import can_research, is_admin


def _count_subquery(queryset: QuerySet[Any], field: str) -> Any:
    return Coalesce(
        Subquery(
            queryset.order_by().values(field).annotate(n=Count("id")).values("n"),
            output_field=IntegerField(),
        ),
        Value(0),
    )


def campaigns_with_progress(*, user: Any) -> QuerySet[Campaign]:
    """Campaigns visible to ``user`` with pair and label counts.

    Annotators see active campaigns; researchers and admins see every campaign.
    ``my_labels`` counts only the caller's own judgements.
    """
    qs = Campaign.objects.select_related("env")
    if not (can_research(user) or is_admin(user)):
        qs = qs.filter(status=Campaign.Status.ACTIVE).filter(campaign_open_to(user))
    # pair_count is a counter on the row; label_count and extra_slots are summed from the
    # campaign's counter shards in this query. All are kept by the services.
    return qs.with_counts().annotate(
        my_label_count=_count_subquery(
            Judgement.objects.filter(pair__campaign=OuterRef("pk"), annotator=user), "pair__campaign"
        ),
        labels_wanted=F("pair_count") * F("overlap") + F("extra_slots"),
    )


def campaign_open_to(user: Any) -> Exists:
    """Campaigns whose who-may-label rule admits ``user`` (groups, invitations)."""
    from feedback.services.annotation import may_label_q

    return Exists(Campaign.objects.filter(may_label_q(user), pk=OuterRef("pk")))


def campaign_for_labelling(*, campaign_id: int, user: Any) -> Campaign:
    """The campaign with ``may_label`` computed in the same query (no extra round trip).

    Hand-written SQL: this runs on every lease (see ``feedback.services.annotation_sql``)."""
    from feedback.services.annotation_sql import campaign_with_may_label

    campaign = campaign_with_may_label(campaign_id=campaign_id, user=user)
    if campaign is None:
        raise Campaign.DoesNotExist(f"No campaign with id {campaign_id}.")
    return campaign


def campaign_get_for_user(*, campaign_id: int, user: Any) -> Campaign:
    """Raises Campaign.DoesNotExist when the campaign is unknown or hidden from the user."""
    return campaigns_with_progress(user=user).get(pk=campaign_id)


def assignment_with_segments(*, assignment_id: int) -> Assignment:
    return Assignment.objects.select_related("pair__segment_a", "pair__segment_b").get(pk=assignment_id)


def segment_clip_for_user(*, segment_id: int) -> Segment:
    """A ready segment's clip. Raises Segment.DoesNotExist for unknown or unrendered ones."""
    return Segment.objects.only("id", "clip", "clip_status").get(
        pk=segment_id, clip_status=Segment.ClipStatus.READY
    )


def pair_campaign_id(*, pair_id: int) -> int | None:
    """The campaign a pair belongs to, or None for an unknown pair."""
    return Pair.objects.filter(pk=pair_id).values_list("campaign_id", flat=True).first()


def trajectory_with_segments(*, trajectory_id: int) -> Trajectory:
    return (
        Trajectory.objects.select_related("env", "policy")
        .prefetch_related("segments")
        .get(pk=trajectory_id)
    )


__all__ = [
    "assignment_with_segments",
    "campaign_get_for_user",
    "campaigns_with_progress",
    "segment_clip_for_user",
    "trajectory_with_segments",
]
