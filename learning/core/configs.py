"""Hyperparameters of the learning backend, as frozen dataclasses.

Each field carries its own docstring (the attribute docstring under it), so a config is its own
documentation; ``dataclasses.asdict`` turns one into the JSON saved on a run row and in every
checkpoint, and ``Config.from_dict`` turns it back. No ``**kwargs`` pass through layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Self

__all__ = ["ACTIVATIONS", "DEVICES", "ConfigError", "RewardNetConfig", "RewardTrainingConfig"]

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "gelu", "silu")
DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")


class ConfigError(ValueError):
    """A hyperparameter is out of range; the message names the field and the allowed values."""


class _ConfigBase:
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing keys take defaults."""
        names = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field(s) {', '.join(unknown)}.")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


@dataclass(frozen=True)
class RewardNetConfig(_ConfigBase):
    """Shape of the reward model: an ensemble of K nets r(s, a)."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Widths of the MLP's hidden layers (after the CNN torso for pixel observations)."""

    activation: str = "relu"
    """Nonlinearity between layers: one of ``ACTIVATIONS``."""

    ensemble_size: int = 3
    """K, the number of members. Their disagreement drives active pair selection (Christiano
    et al. 2017 used 3); K = 1 is a single net."""

    use_actions: bool = True
    """Whether r depends on the action as well as the state (r(s, a) rather than r(s))."""

    cnn: bool = False
    """Pixel observations (C, H, W) go through a small per-member CNN torso (Nature-DQN shape:
    8×8/4, 4×4/2, 3×3/1) before the MLP; needs H, W ≥ 36."""

    cnn_channels: tuple[int, int, int] = (16, 32, 32)
    """Output channels of the three conv layers of the CNN torso, per member."""

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}.")
        if self.ensemble_size < 1:
            raise ConfigError(f"ensemble_size must be ≥ 1, got {self.ensemble_size}.")
        if any(h < 1 for h in self.hidden_sizes):
            raise ConfigError(f"hidden_sizes must be positive, got {self.hidden_sizes}.")
        if len(self.cnn_channels) != 3 or any(c < 1 for c in self.cnn_channels):
            raise ConfigError(f"cnn_channels must be three positive ints, got {self.cnn_channels}.")


@dataclass(frozen=True)
class RewardTrainingConfig(_ConfigBase):
    """How the reward ensemble is fitted to preferences (Bradley–Terry on segment returns)."""

    lr: float = 3e-4
    """Adam learning rate."""

    weight_decay: float = 0.0
    """L2 penalty (Adam's ``weight_decay``); Christiano et al. used L2 regularisation tuned so
    validation loss stays near 1.1–1.5× training loss."""

    batch_size: int = 64
    """Pairs per minibatch, per member."""

    max_epochs: int = 100
    """Upper bound on passes over the training pairs."""

    patience: int = 10
    """Stop when the held-out loss has not improved for this many epochs; the best epoch's
    weights are kept. 0 disables early stopping."""

    held_out_fraction: float = 0.2
    """Fraction of the pairs kept out of training for early stopping and metrics (the split is
    by pair, drawn with ``seed``). 0 trains on everything and reports no held-out metrics."""

    min_held_out_pairs: int = 20
    """Early stopping and best-epoch selection need at least this many held-out pairs. With
    fewer (a new campaign's first few dozen labels) the held-out loss is noise that would stop
    training at a random epoch, so training runs all ``max_epochs`` and keeps the last epoch's
    weights; the held-out pairs are still reported. 0 lets any split steer training."""

    random_response: float = 0.1
    """ε: the probability that the annotator answered uniformly at random, so
    P(A≻B) = (1−ε)·σ(R_A−R_B) + ε/2 (Christiano et al. 2017 assume 0.1). 0 is plain
    Bradley–Terry."""

    desirability_weight: float = 1.0
    """Weight of the auxiliary logistic loss on per-clip desirability labels (no effect when
    the dataset has none)."""

    bootstrap: bool = True
    """Each member trains on its own bootstrap resample of the training pairs (with
    replacement), which decorrelates members; otherwise each member gets its own shuffle."""

    seed: int = 0
    """Seeds the split, the initial weights, the resampling and the minibatch order."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` picks CUDA when available, else CPU."""

    mixed_precision: bool = True
    """Run forward and backward in bfloat16 autocast on CUDA (ignored on CPU, where it is
    slower). Master weights and the loss stay float32."""

    report_every_steps: int = 0
    """Also call the callback every this many optimiser steps within an epoch (so a cancel is
    seen before the epoch ends); 0 reports at epoch ends only."""

    eval_chunk_rows: int = 1 << 20
    """Evaluation processes at most this many (state, action) rows per member at once, which
    bounds memory on large datasets."""

    compile: bool = False
    """Compile the training step's forward (gather, all members, segment sums) with
    ``torch.compile`` on CUDA, fusing the elementwise work around the matrix products. The
    first steps pay a compilation of tens of seconds, so it pays off on long runs over large
    datasets; ignored on CPU."""

    compile_mode: str = "default"
    """``torch.compile`` mode when ``compile`` is on: ``default``, or
    ``max-autotune-no-cudagraphs``, which times Triton matrix-product templates with the
    activation fused into them (minutes of compilation, for the longest runs)."""

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be ≥ 0, got {self.weight_decay}"),
            (self.batch_size >= 1, f"batch_size must be ≥ 1, got {self.batch_size}"),
            (self.max_epochs >= 1, f"max_epochs must be ≥ 1, got {self.max_epochs}"),
            (self.patience >= 0, f"patience must be ≥ 0, got {self.patience}"),
            (
                self.min_held_out_pairs >= 0,
                f"min_held_out_pairs must be ≥ 0, got {self.min_held_out_pairs}",
            ),
            (
                0 <= self.held_out_fraction < 1,
                f"held_out_fraction must be in [0, 1), got {self.held_out_fraction}",
            ),
            (
                0 <= self.random_response < 1,
                f"random_response must be in [0, 1), got {self.random_response}",
            ),
            (
                self.desirability_weight >= 0,
                f"desirability_weight must be ≥ 0, got {self.desirability_weight}",
            ),
            (self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}"),
            (self.report_every_steps >= 0, "report_every_steps must be ≥ 0"),
            (self.eval_chunk_rows >= 1, "eval_chunk_rows must be ≥ 1"),
            (
                self.compile_mode in COMPILE_MODES,
                f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message + ".")
