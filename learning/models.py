"""Training runs (a row per job) and the model versions they register."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from feedback.models import Campaign, PolicyVersion


class ModelKind(models.TextChoices):
    REWARD_MODEL = "reward_model", "reward model"
    POLICY = "policy", "policy"


class RunKind(models.TextChoices):
    REWARD_MODEL = "reward_model", "reward model"
    LOOP = "loop", "loop iteration"


class TrainingRun(models.Model):
    """One training job: its frozen config, the judgements it used, and how it is going.

    The worker writes ``status``/``progress``/``metrics``/``heartbeat_at``/``log`` with
    ``save(update_fields=...)``; the site writes only ``cancel_requested``, so neither clobbers
    the other's columns.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(max_length=20, choices=RunKind.choices, default=RunKind.REWARD_MODEL)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="training_runs")
    config = models.JSONField(
        default=dict,
        help_text='{"net": RewardNetConfig.to_dict(), "train": RewardTrainingConfig.to_dict()}',
    )
    dataset = models.JSONField(
        default=dict, blank=True, help_text="Snapshot of the data used: judgement ids and counts."
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    progress = models.FloatField(default=0.0)
    metrics = models.JSONField(
        default=list, blank=True, help_text="Per-report metric dicts, in order."
    )
    result = models.JSONField(default=dict, blank=True, help_text="Final summary metrics.")
    device = models.CharField(max_length=50, blank=True)
    log = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    checkpoint = models.FileField(upload_to="training_runs/", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed", "cancelled"]),
                name="training_run_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0, progress__lte=1),
                name="training_run_progress_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["reward_model", "loop"]), name="training_run_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} run {self.pk} on campaign {self.campaign_id}: {self.status}"


class ModelVersion(models.Model):
    """A trained model a run registered; at most one per campaign and kind is promoted."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="model_versions")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="model_versions")
    kind = models.CharField(
        max_length=20, choices=ModelKind.choices, default=ModelKind.REWARD_MODEL
    )
    artifact = models.FileField(upload_to="model_versions/")
    metrics = models.JSONField(default=dict, blank=True)
    # Lineage: the policy this one was fine-tuned from, the reward model it was trained
    # against, and (for policies) the PolicyVersion its rollouts are stored under.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    reward_model = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="policies_trained"
    )
    policy = models.OneToOneField(
        PolicyVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="model_version",
    )
    promoted = models.BooleanField(default=False)
    promoted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "kind"],
                condition=Q(promoted=True),
                name="model_version_one_promoted",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["reward_model", "policy"]), name="model_version_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} v{self.pk} (campaign {self.campaign_id}{', promoted' if self.promoted else ''})"


class RetrainRule(models.Model):
    """ "Retrain after N new judgements": when a campaign has gathered ``every_judgements``
    usable labels beyond those the last rule-triggered run used, the scheduler
    (``manage.py apply_retrain_rules``) queues a reward-model run with ``config``."""

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="retrain_rule")
    every_judgements = models.PositiveIntegerField()
    config = models.JSONField(default=dict, blank=True, help_text="RunConfig.to_dict()")
    enabled = models.BooleanField(default=True)
    last_judgement_count = models.PositiveIntegerField(
        default=0, help_text="Usable judgements when the rule last queued a run."
    )
    last_run = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(every_judgements__gte=1), name="retrain_rule_every_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"retrain campaign {self.campaign_id} every {self.every_judgements} judgements"
