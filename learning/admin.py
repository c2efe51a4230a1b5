from django.contrib import admin

from learning.models import ModelVersion, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "campaign",
        "status",
        "progress",
        "device",
        "triggered_by",
        "created_at",
    )
    list_filter = ("status", "kind")
    # The worker owns these columns; editing them here would race with it.
    readonly_fields = (
        "status",
        "progress",
        "metrics",
        "result",
        "dataset",
        "device",
        "log",
        "attempts",
        "heartbeat_at",
        "checkpoint",
        "started_at",
        "finished_at",
        "created_at",
    )


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "campaign", "run", "promoted", "created_at")
    list_filter = ("kind", "promoted")
    readonly_fields = (
        "run",
        "campaign",
        "kind",
        "artifact",
        "metrics",
        "promoted",
        "promoted_at",
        "created_at",
    )
