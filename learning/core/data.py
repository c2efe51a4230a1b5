"""Preference data as device tensors: segments, pairs of segments, and who preferred which.

Encoding (house style 6, as in imitation's ``preference_comparisons``): a preference is the
probability that segment A is preferred to segment B — 1.0 (A better), 0.0 (B better) or 0.5
(equally good). "Can't tell" answers carry no information about the reward and are dropped
before data reaches this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PreferenceDataError", "PreferenceDataset"]


class PreferenceDataError(ValueError):
    """Arrays handed to :class:`PreferenceDataset` have inconsistent shapes or values."""


def _as_tensor(
    value: np.ndarray | torch.Tensor, *, dtype: torch.dtype | None = None
) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    return tensor.to(dtype) if dtype is not None else tensor


@dataclass
class PreferenceDataset:
    """N segments of T steps each, and M judged pairs of them.

    observations:  (N, T, obs_dim) float, or (N, T, C, H, W) uint8/float pixels
    actions:       (N, T, act_dim) float (one-hot for discrete actions), or None (r(s) only)
    pairs:         (M, 2) int64 — indices into the N segments, ``[a, b]``
    preferences:   (M,) float32 — P(A ≻ B): 1.0, 0.0 or 0.5 (soft values in [0, 1] allowed)
    desirability:  (N,) float32 or None — per-segment label: 1.0 desirable, 0.0 undesirable,
                   NaN unsure or not asked
    true_returns:  (N,) float32 or None — the env's return of each segment, for metrics only

    Segments of different lengths are cut or padded by the caller: the Bradley–Terry model
    compares sums of rewards, which is only fair over equal lengths.
    """

    observations: torch.Tensor
    actions: torch.Tensor | None
    pairs: torch.Tensor
    preferences: torch.Tensor
    desirability: torch.Tensor | None = None
    true_returns: torch.Tensor | None = None

    def __post_init__(self) -> None:
        obs = _as_tensor(self.observations)
        if not obs.is_floating_point() and obs.dtype != torch.uint8 or obs.is_floating_point():
            obs = obs.float()
        self.observations = obs
        if obs.ndim not in (3, 5):
            raise PreferenceDataError(
                f"observations must be (N, T, obs_dim) or (N, T, C, H, W), got {tuple(obs.shape)}."
            )
        n_segments, length = obs.shape[:2]
        if n_segments == 0 or length == 0:
            raise PreferenceDataError("Need at least one segment of at least one step.")
        if self.actions is not None:
            self.actions = _as_tensor(self.actions, dtype=torch.float32).to(obs.device)
            if self.actions.ndim != 3 or self.actions.shape[:2] != (n_segments, length):
                raise PreferenceDataError(
                    f"actions must be (N, T, act_dim) = ({n_segments}, {length}, act_dim), "
                    f"got {tuple(self.actions.shape)}; one-hot encode discrete actions."
                )
        self.pairs = _as_tensor(self.pairs, dtype=torch.int64).to(obs.device)
        self.preferences = _as_tensor(self.preferences, dtype=torch.float32).to(obs.device)
        if self.pairs.ndim != 2 or self.pairs.shape[1] != 2:
            raise PreferenceDataError(f"pairs must be (M, 2), got {tuple(self.pairs.shape)}.")
        if self.preferences.shape != (self.pairs.shape[0],):
            raise PreferenceDataError(
                f"preferences must be (M,) = ({self.pairs.shape[0]},), "
                f"got {tuple(self.preferences.shape)}."
            )
        if self.pairs.numel() and (self.pairs.min() < 0 or self.pairs.max() >= n_segments):
            raise PreferenceDataError(f"pairs index segments outside [0, {n_segments}).")
        if (
            torch.isnan(self.preferences).any()
            or ((self.preferences < 0) | (self.preferences > 1)).any()
        ):
            raise PreferenceDataError(
                "preferences must be probabilities in [0, 1] (1.0 A better, 0.0 B better, "
                "0.5 equal); drop 'can't tell' answers before building the dataset."
            )
        for name in ("desirability", "true_returns"):
            value = getattr(self, name)
            if value is None:
                continue
            value = _as_tensor(value, dtype=torch.float32).to(obs.device)
            if value.shape != (n_segments,):
                raise PreferenceDataError(
                    f"{name} must be (N,) = ({n_segments},), got {tuple(value.shape)}."
                )
            setattr(self, name, value)
        if self.desirability is not None:
            known = self.desirability[~torch.isnan(self.desirability)]
            if ((known != 0) & (known != 1)).any():
                raise PreferenceDataError("desirability must be 1.0, 0.0 or NaN (unsure).")

    # ------------------------------------------------------------------ shape facts

    @property
    def num_segments(self) -> int:
        return int(self.observations.shape[0])

    @property
    def num_pairs(self) -> int:
        return int(self.pairs.shape[0])

    @property
    def segment_length(self) -> int:
        return int(self.observations.shape[1])

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """One observation's shape: ``(obs_dim,)`` or ``(C, H, W)``."""
        return tuple(int(s) for s in self.observations.shape[2:])

    @property
    def act_dim(self) -> int:
        return 0 if self.actions is None else int(self.actions.shape[2])

    @property
    def device(self) -> torch.device:
        return self.observations.device

    # ------------------------------------------------------------------ operations

    def to(self, device: torch.device | str) -> PreferenceDataset:
        """The same data on ``device`` (one copy, made up front: training never copies again)."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return PreferenceDataset(
            observations=self.observations.to(device),
            actions=move(self.actions),
            pairs=self.pairs.to(device),
            preferences=self.preferences.to(device),
            desirability=move(self.desirability),
            true_returns=move(self.true_returns),
        )

    def split(self, held_out_fraction: float, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random split of the *pairs* into training and held-out indices, each (M_i,) int64.

        With ``held_out_fraction > 0`` and at least two pairs, at least one pair is held out
        and at least one is kept for training.
        """
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(self.num_pairs, generator=generator).to(self.device)
        n_held = round(held_out_fraction * self.num_pairs)
        if held_out_fraction > 0 and self.num_pairs >= 2:
            n_held = min(max(n_held, 1), self.num_pairs - 1)
        else:
            n_held = 0
        return order[n_held:], order[:n_held]


_ARRAYS = ("observations", "actions", "pairs", "preferences", "desirability", "true_returns")


def save_preference_dataset(path: str, dataset: PreferenceDataset) -> None:
    """Write ``dataset`` to an uncompressed ``.npz`` (absent optional arrays are left out), so
    another process — each rank under ``torchrun`` — can load exactly the same data."""
    arrays = {
        name: getattr(dataset, name).detach().cpu().numpy()
        for name in _ARRAYS
        if getattr(dataset, name) is not None
    }
    with open(path, "wb") as handle:  # np.savez would append ".npz" to a bare path
        np.savez(handle, **arrays)  # type: ignore[arg-type]


def load_preference_dataset(path: str) -> PreferenceDataset:
    """Inverse of :func:`save_preference_dataset`; a file without the required arrays is a
    :class:`PreferenceDataError` naming what is missing."""
    with np.load(path, allow_pickle=False) as archive:
        missing = [n for n in ("observations", "pairs", "preferences") if n not in archive.files]
        if missing:
            raise PreferenceDataError(
                f"{path} is not a preference dataset: it lacks {', '.join(missing)}."
            )
        values = {name: archive[name] for name in _ARRAYS if name in archive.files}
    return PreferenceDataset(
        observations=values["observations"],
        actions=values.get("actions"),
        pairs=values["pairs"],
        preferences=values["preferences"],
        desirability=values.get("desirability"),
        true_returns=values.get("true_returns"),
    )
