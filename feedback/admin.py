from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from feedback import services
from feedback.models import (
    AnnotatorExclusion,
    Assignment,
    Campaign,
    EnvironmentSpec,
    Judgement,
    Pair,
    PolicyVersion,
    Segment,
    Trajectory,
)


@admin.register(EnvironmentSpec)
class EnvironmentSpecAdmin(admin.ModelAdmin):
    list_display = ["env_id", "render_fps", "created_at"]
    search_fields = ["env_id"]


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "env", "kind", "parent", "created_at"]
    list_filter = ["kind", "env"]
    search_fields = ["name"]


class SegmentInline(admin.TabularInline):
    model = Segment
    fields = ["start", "end", "clip_status", "clip", "true_return"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Trajectory)
class TrajectoryAdmin(admin.ModelAdmin):
    list_display = ["id", "env", "policy", "seed", "length", "true_return", "source", "created_at"]
    list_filter = ["env", "source", "policy"]
    inlines = [SegmentInline]
    list_select_related = ["env", "policy"]


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = ["id", "trajectory", "start", "end", "clip_status", "true_return"]
    list_filter = ["clip_status", "trajectory__env"]
    list_select_related = ["trajectory__env"]


@admin.action(description="Queue 20 more random pairs")
def queue_random_pairs(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
    for campaign in queryset:
        try:
            created = services.pairs_create_random(campaign=campaign, count=20)
        except services.NotEnoughSegments as exc:
            modeladmin.message_user(request, str(exc), level=messages.ERROR)
            continue
        modeladmin.message_user(request, f"{campaign}: queued {len(created)} pairs.")


@admin.action(description="Queue 10 gold pairs (known answer, for quality control)")
def queue_gold_pairs(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
    _queue_gold(modeladmin, request, queryset, practice=False)


@admin.action(description="Queue 5 practice pairs (gold pairs shown with their answer)")
def queue_practice_pairs(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
    _queue_gold(modeladmin, request, queryset, practice=True)


def _queue_gold(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Campaign], *,
                practice: bool) -> None:
    for campaign in queryset:
        try:
            created = services.pairs_create_gold(campaign=campaign, count=5 if practice else 10, practice=practice)
        except services.NotEnoughSegments as exc:
            modeladmin.message_user(request, str(exc), level=messages.ERROR)
            continue
        modeladmin.message_user(request, f"{campaign}: queued {len(created)} {'practice' if practice else 'gold'} pairs.")


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "env", "status", "segment_length", "overlap", "adaptive_overlap",
                    "gold_rate", "repeat_rate", "pair_count", "label_count", "created_at"]
    list_filter = ["status", "env"]
    filter_horizontal = ["allowed_groups", "invited"]
    readonly_fields = ["pair_count", "label_count", "extra_slots"]
    actions = [queue_random_pairs, queue_gold_pairs, queue_practice_pairs]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        return super().get_queryset(request).with_counts()  # label counts summed in the list's query


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ["id", "campaign", "segment_a", "segment_b", "priority", "selector", "is_gold",
                    "is_practice", "repeat_of", "slots_taken", "slot_limit", "model_version"]
    list_filter = ["campaign", "selector", "is_gold", "is_practice"]
    raw_id_fields = ["segment_a", "segment_b"]
    readonly_fields = ["slots_taken", "is_open", "repeat_of"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Pairs are queued through services (campaign action, queue_pairs), which keep the
        # campaign's counters and announce new pairs live.
        return False


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "annotator", "left_is_a", "leased_at", "expires_at", "completed_at"]
    list_filter = ["pair__campaign"]
    raw_id_fields = ["pair"]


@admin.register(Judgement)
class JudgementAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "annotator", "preference", "desirability_a", "desirability_b",
                    "left_is_a", "is_simulated", "created_at"]
    list_filter = ["pair__campaign", "preference", "is_simulated"]
    raw_id_fields = ["pair", "assignment"]


@admin.register(AnnotatorExclusion)
class AnnotatorExclusionAdmin(admin.ModelAdmin):
    list_display = ["campaign", "annotator", "excluded_by", "reason", "created_at"]
    list_filter = ["campaign"]
