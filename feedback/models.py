"""Feedback domain: what annotators see and say.

Invariants live here as database constraints; anything spanning several rows (leasing,
recording a judgement) is a service in ``feedback.services``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce


class EnvironmentSpec(models.Model):
    """A Gymnasium environment id (which includes its version, e.g. ``Hopper-v5``)."""

    env_id = models.CharField(max_length=200, unique=True)
    observation_space = models.JSONField(default=dict, help_text="Shape, dtype and bounds.")
    action_space = models.JSONField(default=dict, help_text="Shape/n, dtype and bounds.")
    render_fps = models.PositiveSmallIntegerField(default=30)
    render_width = models.PositiveSmallIntegerField(default=256)
    render_height = models.PositiveSmallIntegerField(default=256)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["env_id"]

    def __str__(self) -> str:
        return self.env_id


class PolicyVersion(models.Model):
    """Where a trajectory's behaviour came from."""

    class Kind(models.TextChoices):
        RANDOM = "random", "random"
        SCRIPTED = "scripted", "scripted controller"
        CHECKPOINT = "checkpoint", "imported checkpoint"
        UPLOADED = "uploaded", "uploaded trajectories"
        BC = "bc", "behavioural cloning"
        FINETUNED = "finetuned", "fine-tuned"

    env = models.ForeignKey(EnvironmentSpec, on_delete=models.PROTECT, related_name="policies")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    checkpoint = models.FileField(upload_to="policies/", blank=True)
    config = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["env", "name"]
        constraints = [
            models.UniqueConstraint(fields=["env", "name"], name="policy_unique_name_per_env"),
        ]

    def __str__(self) -> str:
        return f"{self.env.env_id}/{self.name}"


class Trajectory(models.Model):
    """One episode (or part of one). Arrays live in a compressed ``.npz`` in storage.

    The ``.npz`` holds ``observations (T, *obs_shape)``, ``actions (T, *act_shape)``, and
    optionally ``rewards (T,)`` and ``terminations (T,)``. True rewards are for research
    only and are never shown to annotators.
    """

    class Source(models.TextChoices):
        ROLLOUT = "rollout", "collected rollout"
        UPLOAD = "upload", "uploaded"

    env = models.ForeignKey(EnvironmentSpec, on_delete=models.PROTECT, related_name="trajectories")
    policy = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="trajectories")
    seed = models.BigIntegerField(null=True, blank=True)
    length = models.PositiveIntegerField()
    arrays = models.FileField(upload_to="trajectories/")
    pending_frames = models.FileField(
        upload_to="frames/", blank=True, help_text="Uploaded frames awaiting the renderer."
    )
    has_rewards = models.BooleanField(default=False)
    true_return = models.FloatField(null=True, blank=True, help_text="Research only; never shown.")
    source = models.CharField(max_length=20, choices=Source.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(length__gt=0), name="trajectory_length_positive"),
        ]

    def __str__(self) -> str:
        return f"trajectory {self.pk} ({self.env.env_id}, {self.length} steps)"


class Segment(models.Model):
    """A slice ``[start, end)`` of a trajectory: the unit that is shown and learned from.

    A segment is shown to annotators only when ``clip_status == READY``, which the database
    allows only once a clip file is recorded (the clip is written in full before that).
    """

    class ClipStatus(models.TextChoices):
        PENDING = "pending", "waiting to render"
        READY = "ready", "ready"
        FAILED = "failed", "render failed"
        NONE = "none", "no frames to render"

    trajectory = models.ForeignKey(Trajectory, on_delete=models.CASCADE, related_name="segments")
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    clip = models.FileField(upload_to="clips/", blank=True)
    clip_status = models.CharField(
        max_length=10, choices=ClipStatus.choices, default=ClipStatus.PENDING, db_index=True
    )
    clip_error = models.TextField(blank=True)
    fps = models.PositiveSmallIntegerField(default=30)
    true_return = models.FloatField(null=True, blank=True, help_text="Research only; never shown.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["trajectory", "start"]
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="segment_end_after_start"),
            models.UniqueConstraint(
                fields=["trajectory", "start", "end"], name="segment_unique_bounds"
            ),
            models.CheckConstraint(
                condition=~Q(clip_status="ready") | ~Q(clip=""), name="segment_ready_has_clip"
            ),
        ]

    @property
    def length(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"segment {self.pk} [{self.start}, {self.end}) of trajectory {self.trajectory_id}"


def _counter_sum(field: str) -> Coalesce:
    shards = (
        CampaignCounter.objects.filter(campaign=OuterRef("pk")).order_by().values("campaign")
        .annotate(total=Sum(field)).values("total")
    )
    return Coalesce(Subquery(shards), 0)


class _CounterTotal:
    """A campaign's progress counter, summed over its CampaignCounter shards: set by
    ``CampaignQuerySet.with_counts()``, else read on first use (one query for both)."""

    NAMES = ("label_count", "extra_slots")

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, campaign: Campaign | None, owner: type | None = None) -> Any:
        if campaign is None:
            return self
        if self.name not in campaign.__dict__:
            campaign._load_counts()
        return campaign.__dict__[self.name]

    def __set__(self, campaign: Campaign, value: int) -> None:
        campaign.__dict__[self.name] = value


class CampaignQuerySet(models.QuerySet["Campaign"]):
    def with_counts(self) -> CampaignQuerySet:
        """Campaigns with ``label_count`` and ``extra_slots`` summed from their counter
        shards in the same query (no query per campaign when they are read)."""
        return self.annotate(label_count=_counter_sum("label_count"), extra_slots=_counter_sum("extra_slots"))


class Campaign(models.Model):
    """A labelling job: which env's segments, how many labels per pair, for how long a lease."""

    objects = CampaignQuerySet.as_manager()

    class Status(models.TextChoices):
        ACTIVE = "active", "active"
        PAUSED = "paused", "paused"
        ARCHIVED = "archived", "archived"

    name = models.CharField(max_length=200, unique=True)
    env = models.ForeignKey(EnvironmentSpec, on_delete=models.PROTECT, related_name="campaigns")
    instructions = models.TextField(blank=True)
    segment_length = models.PositiveIntegerField(default=50)
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Labels wanted per pair.")
    adaptive_overlap = models.BooleanField(
        default=False,
        help_text="Ask one more annotator (up to max_overlap) whenever a pair's labels disagree.",
    )
    max_overlap = models.PositiveSmallIntegerField(default=3)
    gold_rate = models.FloatField(
        default=0.0, help_text="Share of leases that serve a gold pair (known answer), 0–1."
    )
    repeat_rate = models.FloatField(
        default=0.0,
        help_text="Share of leases that re-show one of your earlier pairs mirrored (self-consistency), 0–1.",
    )
    min_answer_ms = models.PositiveIntegerField(
        default=1500, help_text="Answers faster than this are flagged as implausibly quick."
    )
    lease_seconds = models.PositiveIntegerField(default=600)
    allowed_groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="+",
        help_text="Who may label: members of these groups (empty with no invitations: every annotator).",
    )
    invited = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="invited_campaigns",
        help_text="Who may label: these people, whatever their groups.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # Kept by the services in the same transaction as the rows they count, so live progress
    # costs one row read instead of a count over every judgement. The label counters, which
    # every judgement moves, are in CampaignCounter's shards (see there): label_count and
    # extra_slots below.
    pair_count = models.PositiveIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="campaign_overlap_positive"),
            models.CheckConstraint(condition=Q(lease_seconds__gte=5), name="campaign_lease_min"),
            models.CheckConstraint(condition=Q(segment_length__gte=1), name="campaign_seglen_min"),
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0, gold_rate__lte=1), name="campaign_gold_rate_unit_interval"
            ),
            models.CheckConstraint(
                condition=Q(repeat_rate__gte=0, repeat_rate__lte=1), name="campaign_repeat_rate_unit_interval"
            ),
            models.CheckConstraint(
                condition=Q(max_overlap__gte=F("overlap")), name="campaign_max_overlap_at_least_overlap"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    label_count = _CounterTotal()  # judgements that count as progress (not gold, not repeats)
    extra_slots = _CounterTotal()  # labels added to the campaign's goal by adaptive overlap

    def _load_counts(self) -> None:
        row = Campaign.objects.with_counts().filter(pk=self.pk).values(*_CounterTotal.NAMES).first()
        self.__dict__.update(row or dict.fromkeys(_CounterTotal.NAMES, 0))

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        for name in _CounterTotal.NAMES:
            self.__dict__.pop(name, None)  # read again when next used
        super().refresh_from_db(*args, **kwargs)


class CampaignCounter(models.Model):
    """One shard of a campaign's progress counters; the campaign's counts are the sums.

    A judgement adds to the shard its assignment id picks, in the judgement's transaction,
    instead of to the campaign row. With one counter row, every judgement of a campaign
    waited for the previous one's commit to update it: under load (64 annotators, 300
    judgements/s on 2 cores) PostgreSQL showed ~5 backends waiting on that row lock at any
    moment (docs/benchmarks.md, issue 3, fifth round).
    """

    SHARDS = 16

    # No single-column index: the unique constraint below leads with the campaign.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="counters", db_index=False)
    shard = models.PositiveSmallIntegerField()
    label_count = models.PositiveIntegerField(default=0)
    extra_slots = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "shard"], name="campaigncounter_one_row_per_shard"),
        ]

    def __str__(self) -> str:
        return f"counter shard {self.shard} of campaign {self.campaign_id}"


class Pair(models.Model):
    """A query: two segments of one campaign, A and B in a fixed canonical order.

    ``slots_taken`` counts the assignments that hold a slot (answered, or leased and not
    yet reclaimed); ``is_open`` is ``slots_taken < slot_limit``. Both are kept by the
    annotation services under the pair's row lock, so finding the next pair is an index
    range scan on the open pairs instead of a count over every assignment.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="pairs")
    segment_a = models.ForeignKey(Segment, on_delete=models.PROTECT, related_name="+")
    segment_b = models.ForeignKey(Segment, on_delete=models.PROTECT, related_name="+")
    priority = models.IntegerField(default=0, help_text="Higher is leased first.")
    selector = models.CharField(max_length=50, default="random")
    model_version = models.CharField(max_length=100, blank=True)
    slots_taken = models.PositiveSmallIntegerField(default=0)
    slot_limit = models.PositiveSmallIntegerField(
        default=1, help_text="Labels wanted for this pair: the campaign's overlap, raised by adaptive overlap."
    )
    is_open = models.BooleanField(default=True)
    is_gold = models.BooleanField(default=False, help_text="Known answer, mixed in for quality control.")
    gold_preference = models.CharField(max_length=1, blank=True, choices=[("a", "A"), ("b", "B")])
    is_practice = models.BooleanField(
        default=False, help_text="A gold pair kept for the practice round: never leased, answer revealed."
    )
    repeat_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="repeats",
        help_text="A private re-showing of this pair, mirrored, to measure self-consistency.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-priority", "id"]
        indexes = [
            models.Index(
                fields=["campaign", "-priority", "id"], condition=Q(is_open=True), name="pair_open_queue"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(segment_a=F("segment_b")), name="pair_distinct_segments"
            ),
            models.UniqueConstraint(
                fields=["campaign", "segment_a", "segment_b"],
                condition=Q(repeat_of__isnull=True),
                name="pair_unique_per_campaign",
            ),
            models.CheckConstraint(
                condition=Q(is_practice=False) | Q(is_gold=True), name="pair_practice_is_gold"
            ),
            models.CheckConstraint(
                condition=Q(is_gold=False, gold_preference="") | Q(is_gold=True, gold_preference__in=["a", "b"]),
                name="pair_gold_has_answer",
            ),
        ]

    def __str__(self) -> str:
        return f"pair {self.pk} ({self.segment_a_id} vs {self.segment_b_id})"


class Assignment(models.Model):
    """A lease of a pair to one annotator, with the left/right order shown to them.

    One row per (pair, annotator): a lapsed lease that nobody else took is renewed in place.
    """

    # No single-column indexes on the two keys: assignment_once_per_annotator (pair, annotator)
    # and assignment_open_idx (annotator, completed_at) lead with them and serve the same
    # lookups. Every lease inserts a row and every judgement rewrites one (completed_at is
    # indexed, so not in place): each index less is work less on the labelling hot path.
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments", db_index=False
    )
    left_is_a = models.BooleanField(help_text="Randomised per assignment; recorded for bias.")
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    holds_slot = models.BooleanField(
        default=True, help_text="False once a lapsed lease's slot was given back to the pool."
    )

    class Meta:
        ordering = ["leased_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["pair", "annotator"], name="assignment_once_per_annotator"),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("leased_at")), name="assignment_expires_after_lease"
            ),
        ]
        indexes = [
            models.Index(fields=["annotator", "completed_at"], name="assignment_open_idx"),
            # Lapsed leases still holding a slot: what reclaiming scans.
            models.Index(
                fields=["expires_at"],
                condition=Q(completed_at__isnull=True, holds_slot=True),
                name="assignment_reclaim_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk} of pair {self.pair_id} to {self.annotator_id}"


class Judgement(models.Model):
    """An annotator's answer about a pair, stored in canonical A/B terms.

    ``preference`` is the A/B answer; ``preferred_a_probability`` follows the literature
    (1.0 A, 0.0 B, 0.5 equal, null for can't tell, which is kept but not learned from).
    """

    class Preference(models.TextChoices):
        A = "a", "A better"
        B = "b", "B better"
        EQUAL = "equal", "equal"
        CANT_TELL = "cant_tell", "can't tell"

    class Desirability(models.TextChoices):
        DESIRABLE = "desirable", "desirable"
        UNDESIRABLE = "undesirable", "undesirable"
        UNSURE = "unsure", "unsure"

    # judgement_once_per_annotator (pair, annotator) serves lookups by pair (see Assignment).
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="judgements", db_index=False)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgements"
    )
    assignment = models.OneToOneField(Assignment, on_delete=models.PROTECT, related_name="judgement")
    preference = models.CharField(max_length=10, choices=Preference.choices)
    desirability_a = models.CharField(max_length=12, choices=Desirability.choices)
    desirability_b = models.CharField(max_length=12, choices=Desirability.choices)
    confidence = models.FloatField(null=True, blank=True)
    elapsed_ms = models.PositiveIntegerField(null=True, blank=True)
    left_is_a = models.BooleanField(help_text="Which segment the annotator saw on the left.")
    is_simulated = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["pair", "annotator"], name="judgement_once_per_annotator"),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | Q(confidence__gte=0, confidence__lte=1),
                name="judgement_confidence_unit_interval",
            ),
        ]

    @property
    def preferred_a_probability(self) -> float | None:
        return {"a": 1.0, "b": 0.0, "equal": 0.5}.get(self.preference)

    def __str__(self) -> str:
        return f"judgement {self.pk} on pair {self.pair_id}: {self.preference}"


class AnnotatorExclusion(models.Model):
    """A researcher's decision to leave an annotator's labels out of a campaign's training
    data, exports and agreement statistics. The labels themselves are kept."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="exclusions")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    reason = models.TextField(blank=True)
    excluded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "annotator"], name="exclusion_once_per_campaign"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator_id} excluded from {self.campaign_id}"


class DatasetSnapshot(models.Model):
    """A frozen, content-hashed export of one or more campaigns' judgements.

    Written by ``feedback.datasets`` (a background job); the files live in storage under
    ``datasets/<id>/`` and never change once the snapshot succeeded, so a download today
    is byte for byte the download of next year. ``content_hash`` is a sha256 over a
    canonical serialisation of the exported rows, so two exports of the same data with the
    same filters carry the same hash whatever the file format's own bytes.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    class Origin(models.TextChoices):
        EXPORTED = "exported", "exported here"
        IMPORTED = "imported", "imported from another instance"

    name = models.CharField(max_length=200)
    campaigns = models.ManyToManyField(Campaign, related_name="dataset_snapshots")
    filters = models.JSONField(default=dict, help_text="The normalised filters the rows were chosen by.")
    formats = models.JSONField(default=list, help_text="Formats written: parquet, jsonl, hf, minari.")
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.EXPORTED)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="0–1, written by the export job.")
    error = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64, blank=True, db_index=True)
    counts = models.JSONField(default=dict, blank=True)
    statistics = models.JSONField(default=dict, blank=True)
    files = models.JSONField(
        default=dict, blank=True, help_text="Artifact name → {path, bytes, sha256} in storage."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from the export job (claim and progress)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0, progress__lte=1), name="snapshot_progress_unit_interval"
            ),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | ~Q(content_hash=""), name="snapshot_succeeded_has_hash"
            ),
        ]

    def __str__(self) -> str:
        return f"dataset snapshot {self.pk} ({self.name})"
