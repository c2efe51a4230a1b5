from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from feedback import services
from feedback.models import Assignment, Campaign, EnvironmentSpec, Judgement, Pair, PolicyVersion, Segment, Trajectory


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


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "env", "status", "segment_length", "overlap", "created_at"]
    list_filter = ["status", "env"]
    actions = [queue_random_pairs]


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ["id", "campaign", "segment_a", "segment_b", "priority", "selector", "model_version"]
    list_filter = ["campaign", "selector"]
    raw_id_fields = ["segment_a", "segment_b"]
    readonly_fields = ["slots_taken", "is_open"]

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
