"""Minari datasets of the clips annotators found desirable: demonstrations for offline RL,
behavioural cloning and GAIL/AIRL. Optional: ``pip install 'preflab[minari]'``.

A segment counts as desirable when more of its desirability votes in the export say
"desirable" than say "undesirable" or "unsure" together. Each desirable segment becomes one
episode: its T actions and rewards, and T + 1 observations (the step after the segment is
taken from the trajectory when it exists; otherwise the segment's last observation is
repeated and the episode is marked truncated). Minari's Arrow storage is used, so neither
h5py nor jax is needed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from feedback.storage import load_npz

MISSING = (
    "The Minari format needs the optional 'minari' package: pip install 'preflab[minari]' "
    "(or leave 'minari' out of formats)."
)


class MinariUnavailable(RuntimeError):
    pass


def minari_available() -> bool:
    return importlib.util.find_spec("minari") is not None


def is_desirable(desirable: int, undesirable: int, unsure: int) -> bool:
    return desirable > undesirable + unsure


def write_minari(*, segments: Path, out: Path, snapshot_id: int, trajectory_arrays: dict[int, str]) -> list[str]:
    """One Minari dataset per environment under ``out``; returns their dataset ids."""
    if not minari_available():
        raise MinariUnavailable(MISSING)
    os.environ["MINARI_DATASETS_PATH"] = str(out)  # read by minari when it builds paths
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    episodes: dict[str, list[Any]] = {}
    spaces: dict[str, tuple[Any, Any]] = {}
    loaded: tuple[int, dict[str, np.ndarray]] | None = None
    columns = ["trajectory_id", "env_id", "start", "end", "desirable_votes", "undesirable_votes",
               "unsure_votes"]
    for batch in pq.ParquetFile(segments).iter_batches(batch_size=256, columns=columns):
        for row in batch.to_pylist():
            if not is_desirable(row["desirable_votes"], row["undesirable_votes"], row["unsure_votes"]):
                continue
            tid, start, end = row["trajectory_id"], row["start"], row["end"]
            if loaded is None or loaded[0] != tid:
                loaded = (tid, load_npz(trajectory_arrays[tid]))
            arrays = loaded[1]
            has_next = end < len(arrays["observations"])
            obs = arrays["observations"][start:end + 1] if has_next else np.concatenate(
                [arrays["observations"][start:end], arrays["observations"][end - 1:end]])
            actions = arrays["actions"][start:end]
            steps = end - start
            rewards = arrays["rewards"][start:end] if "rewards" in arrays else np.zeros(steps)
            terminations = (arrays["terminations"][start:end] if "terminations" in arrays
                            else np.zeros(steps, dtype=bool)).astype(bool)
            truncations = np.zeros(steps, dtype=bool)
            truncations[-1] = not terminations[-1]  # a clip ends where the segment ends
            env_id = row["env_id"]
            buffers = episodes.setdefault(env_id, [])
            buffers.append(EpisodeBuffer(
                id=len(buffers), observations=obs, actions=actions, rewards=rewards.astype(np.float64),
                terminations=terminations, truncations=truncations, infos={},
            ))
            spaces.setdefault(env_id, (
                gym.spaces.Box(-np.inf, np.inf, obs.shape[1:], obs.dtype if obs.dtype.kind == "f" else np.float64),
                gym.spaces.Box(-np.inf, np.inf, actions.shape[1:],
                               actions.dtype if actions.dtype.kind == "f" else np.float64),
            ))
    ids = []
    for env_id, buffers in episodes.items():
        base = re.sub(r"-v\d+$", "", env_id)
        base = re.sub(r"[^A-Za-z0-9_]", "_", base) or "env"
        dataset_id = f"preflab/{base}/desirable-v{snapshot_id}"
        observation_space, action_space = spaces[env_id]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # minari warns about every optional metadata field
            minari.create_dataset_from_buffers(
                dataset_id, buffers, observation_space=observation_space, action_space=action_space,
                algorithm_name="PrefLab: clips annotators labelled desirable",
                author="PrefLab", description=f"Desirable segments of {env_id} from PrefLab snapshot {snapshot_id}.",
                data_format="arrow",
            )
        ids.append(dataset_id)
    return ids
