"""The Arrow schemas of a snapshot's two tables, shared by the writers and the importer.

``pairs``: one row per pair with every vote (a list of structs), the aggregated soft label
and provenance. ``segments``: one row per segment with its arrays, flattened per step
(``observations[t]`` is observation t flattened; ``observation_shape`` restores it).
Arrays are float64 so every dtype PrefLab stores (float32/64, ints, bools) round-trips
exactly; ``*_dtype`` records the original dtype for the importer.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1
TIMESTAMP = pa.timestamp("us", tz="UTC")

VOTE_TYPE = pa.struct([
    pa.field("annotator", pa.string()),
    pa.field("preference", pa.string()),  # a | b | equal | cant_tell (canonical A/B terms)
    pa.field("preferred_a_probability", pa.float64()),  # 1.0 / 0.0 / 0.5, null for cant_tell
    pa.field("desirability_a", pa.string()),
    pa.field("desirability_b", pa.string()),
    pa.field("confidence", pa.float64()),
    pa.field("elapsed_ms", pa.int64()),
    pa.field("left_is_a", pa.bool_()),  # which clip the annotator saw on the left
    pa.field("is_simulated", pa.bool_()),
    pa.field("created_at", TIMESTAMP),
])
VOTES_TYPE = pa.list_(VOTE_TYPE)

PAIR_SCHEMA = pa.schema([
    pa.field("pair_id", pa.int64(), nullable=False),
    pa.field("campaign_id", pa.int64(), nullable=False),
    pa.field("campaign", pa.string()),
    pa.field("env_id", pa.string()),
    pa.field("env_version", pa.int32()),
    pa.field("pair_created_at", TIMESTAMP),
    pa.field("is_gold", pa.bool_()),
    pa.field("gold_preference", pa.string()),
    pa.field("repeat_of", pa.int64()),
    pa.field("priority", pa.int64()),
    pa.field("selector", pa.string()),
    pa.field("model_version", pa.string()),
    pa.field("segment_a_id", pa.int64()),
    pa.field("segment_b_id", pa.int64()),
    pa.field("trajectory_a_id", pa.int64()),
    pa.field("trajectory_b_id", pa.int64()),
    pa.field("start_a", pa.int64()),
    pa.field("end_a", pa.int64()),
    pa.field("start_b", pa.int64()),
    pa.field("end_b", pa.int64()),
    pa.field("seed_a", pa.int64()),
    pa.field("seed_b", pa.int64()),
    pa.field("policy_a", pa.string()),
    pa.field("policy_b", pa.string()),
    pa.field("policy_kind_a", pa.string()),
    pa.field("policy_kind_b", pa.string()),
    pa.field("true_return_a", pa.float64()),
    pa.field("true_return_b", pa.float64()),
    pa.field("votes", VOTES_TYPE),
    pa.field("num_votes", pa.int64()),
    pa.field("soft_label", pa.float64()),  # P(A preferred): mean over votes other than cant_tell
    pa.field("majority", pa.string()),
    pa.field("agreement", pa.float64()),  # share of decisive votes equal to the majority
], metadata={"preflab_schema_version": str(SCHEMA_VERSION), "preflab_table": "pairs"})

STEPS_TYPE = pa.list_(pa.list_(pa.float64()))
SEGMENT_SCHEMA = pa.schema([
    pa.field("segment_id", pa.int64(), nullable=False),
    pa.field("trajectory_id", pa.int64(), nullable=False),
    pa.field("env_id", pa.string()),
    pa.field("policy", pa.string()),
    pa.field("policy_kind", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("trajectory_length", pa.int64()),
    pa.field("start", pa.int64()),
    pa.field("end", pa.int64()),
    pa.field("true_return", pa.float64()),
    pa.field("in_pairs", pa.bool_()),  # False: shipped only so the trajectory can be rebuilt
    pa.field("desirable_votes", pa.int64()),
    pa.field("undesirable_votes", pa.int64()),
    pa.field("unsure_votes", pa.int64()),
    pa.field("observation_shape", pa.list_(pa.int64())),
    pa.field("observation_dtype", pa.string()),
    pa.field("action_shape", pa.list_(pa.int64())),
    pa.field("action_dtype", pa.string()),
    pa.field("observations", STEPS_TYPE),  # (T, prod(observation_shape))
    pa.field("actions", STEPS_TYPE),  # (T, prod(action_shape))
    pa.field("rewards", pa.list_(pa.float64())),  # (T,), null when the env gave none
    pa.field("terminations", pa.list_(pa.bool_())),  # (T,), null when not recorded
], metadata={"preflab_schema_version": str(SCHEMA_VERSION), "preflab_table": "segments"})
