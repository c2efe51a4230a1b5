"""GAIL/AIRL hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass

from learning.core.configs import ACTIVATIONS, DEVICES, ConfigError, _ConfigBase

ADVERSARIAL_KINDS = ("gail", "airl")
GAIL_MAX_ACCURACY = 0.8
"""GAIL's default ceiling on discriminator accuracy: on Pendulum seed 1 (100k steps) 0.8 kept the
return at −144 where 0.9 and no ceiling collapsed to ≈ −1430 in the last round."""


@dataclass(frozen=True)
class AdversarialConfig(_ConfigBase):
    """Hyperparameters of GAIL/AIRL training (the generator's are a :class:`FinetuneConfig`)."""

    kind: str = "airl"
    """``airl`` (reward term plus potential shaping; logit f − log π) or ``gail``."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the hidden layers of g (and of h for AIRL)."""

    activation: str = "relu"
    """Nonlinearity: one of ``ACTIVATIONS``."""

    lr: float = 1e-3
    """Adam learning rate of the discriminator."""

    batch_size: int = 256
    """Expert transitions per discriminator minibatch (and as many negatives)."""

    total_env_steps: int = 100_000
    """Generator env steps in all."""

    steps_per_round: int = 4_096
    """Generator env steps between discriminator phases."""

    discriminator_updates: int = 32
    """Discriminator minibatch updates per round."""

    gradient_penalty: float | None = None
    """Weight of the R1 penalty E_expert ||∇ logit||² on the expert inputs (0 disables);
    None takes the benchmarked value of the kind (:meth:`penalty_weight`)."""

    max_accuracy: float | None = None
    """Skip a discriminator update when its accuracy on that minibatch (expert and negatives
    together, before the update) is above this, so the discriminator never wins outright and
    the reward stays informative; in (0.5, 1], 1 never skips. None takes the benchmarked value
    of the kind (:meth:`accuracy_ceiling`)."""

    policy_buffer: int = 20_000
    """Most recent policy transitions kept as negatives."""

    undesirable_fraction: float = 0.25
    """Share of each negative minibatch drawn from the undesirable clips, when there are any."""

    gamma: float = 0.98
    """AIRL's shaping discount γ in g + γ·h(s') − h(s); set it to the RL discount."""

    absorbing: bool = True
    """Absorbing states at terminations, and rewards measured from the absorbing state's
    value (module docstring)."""

    seed: int = 0
    """Seeds the discriminator's weights and the minibatch draws."""

    device: str = "auto"
    """Where the discriminator trains: ``auto``, ``cpu`` or ``cuda``."""

    def __post_init__(self) -> None:
        checks = [
            (self.kind in ADVERSARIAL_KINDS, f"kind must be one of {ADVERSARIAL_KINDS}, got {self.kind!r}"),
            (all(h >= 1 for h in self.hidden_sizes), f"hidden_sizes must be positive, got {self.hidden_sizes}"),
            (self.activation in ACTIVATIONS, f"activation must be one of {ACTIVATIONS}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.batch_size >= 1, f"batch_size must be ≥ 1, got {self.batch_size}"),
            (self.total_env_steps >= 1, "total_env_steps must be ≥ 1"),
            (self.steps_per_round >= 1, "steps_per_round must be ≥ 1"),
            (self.discriminator_updates >= 0, "discriminator_updates must be ≥ 0"),
            (
                self.gradient_penalty is None or self.gradient_penalty >= 0,
                f"gradient_penalty must be ≥ 0 or None, got {self.gradient_penalty}",
            ),
            (
                self.max_accuracy is None or 0.5 < self.max_accuracy <= 1,
                f"max_accuracy must be in (0.5, 1] or None, got {self.max_accuracy}",
            ),
            (self.policy_buffer >= self.batch_size, "policy_buffer must be ≥ batch_size"),
            (0 <= self.undesirable_fraction < 1, "undesirable_fraction must be in [0, 1)"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message + ".")

    def penalty_weight(self) -> float:
        """The R1 weight in use: ``gradient_penalty``, or by default 10 for GAIL and 1 for AIRL.
        GAIL's logit is its reward, and with weight 1 its discriminator outran the generator
        late in training on Pendulum (returns fell from ≈ −120 at 30k steps to −500…−670 at
        100k); weight 10 kept it at ≈ −125. AIRL, whose logit subtracts log π, did best at 1."""
        if self.gradient_penalty is not None:
            return self.gradient_penalty
        return 10.0 if self.kind == "gail" else 1.0

    def accuracy_ceiling(self) -> float:
        """The discriminator-accuracy ceiling in use: ``max_accuracy``, or by default GAIL_MAX_ACCURACY
        for GAIL and 1 (never skip) for AIRL."""
        if self.max_accuracy is not None:
            return self.max_accuracy
        return GAIL_MAX_ACCURACY if self.kind == "gail" else 1.0
