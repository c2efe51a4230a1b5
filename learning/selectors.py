"""Reads for the learning app. Reading feedback's models from here is allowed; feedback never
imports learning."""

from __future__ import annotations

from django.db.models import QuerySet

from feedback.models import AnnotatorExclusion, Campaign, Judgement
from learning.models import ModelVersion, TrainingRun


def judgements_for_training(*, campaign: Campaign) -> QuerySet[Judgement]:
    """The judgements a reward model of ``campaign`` learns from, with their segments.

    Kept: answers A / B / equal on real pairs and gold pairs. Dropped: "can't tell" (no
    information about the reward), repeat pairs (they measure an annotator's consistency and
    would double-count the original pair), practice pairs, and annotators a researcher excluded
    from this campaign.
    """
    excluded = AnnotatorExclusion.objects.filter(campaign=campaign).values("annotator_id")
    return (
        Judgement.objects.filter(
            pair__campaign=campaign, pair__repeat_of__isnull=True, pair__is_practice=False
        )
        .exclude(preference=Judgement.Preference.CANT_TELL)
        .exclude(annotator_id__in=excluded)
        .select_related("pair__segment_a__trajectory", "pair__segment_b__trajectory")
        .order_by("id")
    )


def training_run_get(*, run_id: int) -> TrainingRun:
    return TrainingRun.objects.select_related("campaign", "triggered_by").get(pk=run_id)


def model_versions_for(*, campaign_id: int | None = None) -> QuerySet[ModelVersion]:
    versions = ModelVersion.objects.select_related("run")
    return versions.filter(campaign_id=campaign_id) if campaign_id is not None else versions


def model_version_promoted(*, campaign: Campaign, kind: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(campaign=campaign, kind=kind, promoted=True).first()
