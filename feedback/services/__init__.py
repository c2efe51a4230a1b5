"""Writes. Each service is keyword-only, typed and owns its transaction."""

from feedback.services.annotation import (
    AssignmentGone,
    CampaignClosed,
    JudgementConflict,
    NotInvited,
    JudgementInput,
    NotYourAssignment,
    assignment_lease_next,
    campaign_may_label,
    judgement_record,
)
from feedback.services.campaigns import (
    NotEnoughSegments,
    annotator_exclusion_set,
    campaign_create,
    pairs_add,
    pairs_create_gold,
    pairs_create_random,
)
from feedback.services.trajectories import (
    environment_get_or_create,
    policy_get_or_create,
    segment_bounds,
    segment_clip_attach,
    trajectory_create,
    trajectory_render_pending,
)

__all__ = [
    "AssignmentGone",
    "JudgementConflict",
    "JudgementInput",
    "NotYourAssignment",
    "NotEnoughSegments",
    "NotInvited",
    "annotator_exclusion_set",
    "pairs_create_gold",
    "CampaignClosed",
    "assignment_lease_next",
    "campaign_may_label",
    "campaign_create",
    "environment_get_or_create",
    "judgement_record",
    "pairs_add",
    "pairs_create_random",
    "policy_get_or_create",
    "segment_bounds",
    "segment_clip_attach",
    "trajectory_create",
    "trajectory_render_pending",
]
