"""Hugging Face ``datasets`` directory (``save_to_disk``) with a dataset card.

Nothing is downloaded: the hub and datasets stay offline whenever this module is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from feedback.datasets.schema import PAIR_SCHEMA, SEGMENT_SCHEMA


def offline() -> None:
    """``datasets`` must never reach the network from PrefLab (no hub is reachable)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"


def write_hf(*, pairs: Path, segments: Path, out: Path, cache: Path, card: str) -> None:
    """``out`` holds the pairs dataset (``load_from_disk(out)``), ``out/segments`` the
    segment arrays, and ``out/README.md`` the card. Built from the Parquet files, which
    ``datasets`` memory-maps, so memory stays bounded."""
    offline()
    import datasets

    datasets.disable_progress_bars()  # a job's log is not a terminal
    pairs_ds = datasets.Dataset.from_parquet(str(pairs), cache_dir=str(cache), keep_in_memory=False)
    pairs_ds.save_to_disk(str(out))
    segments_ds = datasets.Dataset.from_parquet(str(segments), cache_dir=str(cache), keep_in_memory=False)
    segments_ds.save_to_disk(str(out / "segments"))
    (out / "README.md").write_text(card, encoding="utf-8")


def _schema_table(schema: Any) -> str:
    return "\n".join(f"| `{f.name}` | `{f.type}` |" for f in schema)


def dataset_card(*, name: str, content_hash: str, filters: dict[str, Any], counts: dict[str, Any],
                 statistics: dict[str, Any], campaigns: list[dict[str, Any]]) -> str:
    """A README with YAML front matter (as the Hub expects), statistics, agreement and schema."""
    agreement = statistics["agreement"]
    alpha = agreement["krippendorff_alpha"]
    names = ", ".join(f"{c['name']} ({c['env_id']})" for c in campaigns)
    return f"""---
pretty_name: "{name}"
tags: [preference-learning, rlhf, reinforcement-learning, preflab]
configs:
- config_name: default
  data_files: pairs.parquet
---

# {name}

Pairwise preference judgements on reinforcement-learning agent behaviour, exported from
PrefLab. Campaigns: {names}.

Content hash (sha256 over the canonical rows): `{content_hash}`

## Loading

```python
from datasets import load_from_disk
pairs = load_from_disk("<this directory>")             # one row per pair, every vote
segments = load_from_disk("<this directory>/segments")  # arrays of every segment
```

## Statistics

| | |
|---|---|
| pairs | {counts['pairs']} |
| judgements | {counts['judgements']} |
| annotators | {counts['annotators']} |
| simulated judgements | {counts['simulated_judgements']} |
| gold pairs | {counts['gold_pairs']} |
| segments | {counts['segments']} |
| trajectories | {counts['trajectories']} |

Answers: {json.dumps(statistics['label_distribution'])}.
Desirability of clips: {json.dumps(statistics['desirability'])}.
Position bias: {json.dumps(statistics['position_bias'])}.

## Agreement

Krippendorff's α (nominal, "can't tell" as missing): {'n/a' if alpha is None else f'{alpha:.4f}'}
over {agreement['pairs_with_multiple_votes']} pairs with two or more votes; mean share of
votes agreeing with each pair's majority: {agreement['mean_majority_agreement']}.

## Label semantics

`preference` is in canonical A/B terms (`a`, `b`, `equal`, `cant_tell`); `left_is_a` says
which clip the annotator saw on the left. `preferred_a_probability` is 1.0 / 0.0 / 0.5 and
null for "can't tell", which is kept but not learned from. `soft_label` is its mean over a
pair's votes.

## Filters

```json
{json.dumps(filters, indent=2, sort_keys=True)}
```

## Schema: pairs

| column | type |
|---|---|
{_schema_table(PAIR_SCHEMA)}

## Schema: segments

| column | type |
|---|---|
{_schema_table(SEGMENT_SCHEMA)}
"""
