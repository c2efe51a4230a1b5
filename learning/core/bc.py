"""Behavioural cloning from desirable clips, straight into a Stable-Baselines3 policy.

The cloned weights live in the SB3 model that fine-tuning then continues
(:func:`learning.core.finetune.finetune_policy` with ``init=model``), so there is no separate
BC network to convert. What is maximised is the likelihood of the demonstrated actions under
the model's own action distribution:

- PPO / A2C: the Gaussian or categorical policy head (``evaluate_actions``), plus an optional
  entropy bonus;
- SAC: the tanh-squashed Gaussian actor (actions rescaled to [-1, 1] and kept inside it);
- DQN: the Q-values read as logits of a softmax policy (cross-entropy), after which the
  target net is synchronised — the greedy action then is the demonstrated one.

Recipe: split the demonstration steps into training and held-out sets (seeded); Adam on
minibatches for ``epochs`` passes; report after each epoch through ``on_step``; keep the
epoch with the lowest held-out loss.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from learning.core.callbacks import TrainingCallback
from learning.core.configs import ConfigError, _ConfigBase

__all__ = ["BCConfig", "BCResult", "bc_loss", "behaviour_clone"]


@dataclass(frozen=True)
class BCConfig(_ConfigBase):
    """Behavioural cloning hyperparameters."""

    lr: float = 3e-3
    """Adam learning rate."""

    batch_size: int = 64
    """Demonstration steps per minibatch."""

    epochs: int = 30
    """Passes over the training steps."""

    entropy_weight: float = 1e-3
    """Weight of the policy-entropy bonus (PPO/A2C/SAC), which keeps the cloned policy from
    collapsing to a point mass that fine-tuning could not explore from."""

    weight_decay: float = 0.0
    """L2 penalty (Adam's ``weight_decay``)."""

    held_out_fraction: float = 0.1
    """Fraction of the steps kept out for choosing the best epoch (0: keep the last epoch)."""

    seed: int = 0
    """Seeds the split and the minibatch order."""

    def __post_init__(self) -> None:
        checks = [
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.batch_size >= 1, f"batch_size must be ≥ 1, got {self.batch_size}"),
            (self.epochs >= 1, f"epochs must be ≥ 1, got {self.epochs}"),
            (self.entropy_weight >= 0, f"entropy_weight must be ≥ 0, got {self.entropy_weight}"),
            (self.weight_decay >= 0, f"weight_decay must be ≥ 0, got {self.weight_decay}"),
            (0 <= self.held_out_fraction < 1, "held_out_fraction must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message + ".")


@dataclass
class BCResult:
    """What cloning achieved: the final and best held-out negative log-likelihood, and the
    held-out action accuracy (discrete) or mean squared error of the mode (continuous)."""

    epochs: int
    steps: int
    best_epoch: int
    stop_reason: str  # "epochs" | "callback"
    train_loss: float
    held_out_loss: float
    held_out_accuracy: float
    held_out_mse: float
    wall_time_s: float
    history: list[dict[str, float]] = field(default_factory=list)


def _as_action_tensor(actions: np.ndarray, space: gym.Space[Any], device: torch.device) -> torch.Tensor:
    """Discrete: (N,) ints or (N, n) one-hot → (N,) int64; Box: (N, *shape) float32."""
    actions = np.asarray(actions)
    if isinstance(space, gym.spaces.Discrete):
        if actions.ndim == 2 and actions.shape[1] == space.n and actions.shape[1] > 1:
            actions = actions.argmax(1)
        return torch.as_tensor(actions.reshape(-1) - int(space.start), dtype=torch.long, device=device)
    return torch.as_tensor(actions, dtype=torch.float32, device=device).reshape(-1, *space.shape)


def bc_loss(
    model: Any, obs: torch.Tensor, actions: torch.Tensor, *, entropy_weight: float = 0.0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative log-likelihood of demonstrated actions under an SB3 model's policy.

    obs: (B, *obs_shape) float32; actions: (B,) int64 for Discrete, (B, *act_shape) float32 in
    the env's units for Box. Returns the loss (minus ``entropy_weight`` × mean entropy where
    the policy has one) and metrics ``nll``, ``entropy`` (NaN for DQN), and ``accuracy`` (the
    mode equals the demonstrated action; discrete) or ``mse`` (of the mode; continuous).
    """
    policy = model.policy
    space = model.action_space
    name = type(model).__name__.lower()
    nan = torch.tensor(math.nan)
    if name == "dqn":
        logits = policy.q_net(obs)  # (B, n) Q-values as softmax logits
        nll = F.cross_entropy(logits, actions)
        entropy = nan
        mode = logits.argmax(1)
    elif name == "sac":
        actor = policy.actor
        low, high = torch.as_tensor(space.low, device=obs.device), torch.as_tensor(space.high, device=obs.device)
        # Rescale to the actor's [-1, 1] and stay off ±1, where atanh (inside log_prob) is infinite.
        scaled = (2.0 * (actions - low) / (high - low) - 1.0).clamp(-1 + 1e-3, 1 - 1e-3)
        mean, log_std, _ = actor.get_action_dist_params(obs)
        distribution = actor.action_dist.proba_distribution(mean, log_std)
        nll = -distribution.log_prob(scaled).mean()
        # The Gaussian's entropy before squashing: a cheap, monotone stand-in for the squashed one.
        entropy = distribution.distribution.entropy().sum(-1).mean()
        squashed_mode = torch.tanh(mean)
        mode = low + (squashed_mode + 1.0) * 0.5 * (high - low)
        # Saturated demonstrations (bang-bang torques at ±1) give the likelihood a vanishing
        # gradient through tanh; a squared error on the squashed mode keeps the mean moving.
        nll = nll + ((squashed_mode - scaled) ** 2).sum(-1).mean()
    else:  # ppo, a2c: ActorCriticPolicy
        _, log_prob, entropy_t = policy.evaluate_actions(obs, actions)
        nll = -log_prob.mean()
        entropy = entropy_t.mean() if entropy_t is not None else nan
        distribution = policy.get_distribution(obs)
        mode = distribution.mode()
    loss = nll - entropy_weight * entropy if not torch.isnan(entropy) else nll
    with torch.no_grad():
        metrics: dict[str, torch.Tensor] = {"nll": nll.detach(), "entropy": entropy.detach().cpu()}
        if isinstance(space, gym.spaces.Discrete):
            metrics["accuracy"] = (mode.reshape(-1) == actions).float().mean()
        else:
            metrics["mse"] = ((mode.reshape(actions.shape) - actions) ** 2).mean()
    return loss, metrics


def behaviour_clone(
    model: Any,
    observations: np.ndarray,
    actions: np.ndarray,
    config: BCConfig,
    callback: TrainingCallback | None = None,
) -> BCResult:
    """Clone the demonstrated ``actions`` into ``model``'s policy (in place).

    model:        an SB3 PPO, A2C, SAC or DQN model (e.g. from
                  :func:`learning.core.finetune.build_model`)
    observations: (N, *obs_shape) — the states of the desirable clips' steps
    actions:      (N,) ints or (N, n) one-hot for Discrete; (N, *act_shape) floats for Box

    The callback gets ``on_step(epoch, metrics)`` after each epoch (``train_loss``,
    ``held_out_loss``, ``held_out_accuracy`` or ``held_out_mse``); False stops early, keeping
    the best epoch so far. Deterministic for a given ``config.seed`` on CPU.
    """
    started = time.perf_counter()
    policy = model.policy
    device = policy.device
    obs = torch.as_tensor(np.asarray(observations), dtype=torch.float32, device=device)
    acts = _as_action_tensor(actions, model.action_space, device)
    if obs.shape[0] != acts.shape[0] or obs.shape[0] == 0:
        raise ValueError(
            f"Need as many actions as observations (≥ 1); got {obs.shape[0]} and {acts.shape[0]}."
        )
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(obs.shape[0], generator=generator).to(device)
    n_held = round(config.held_out_fraction * obs.shape[0]) if obs.shape[0] >= 10 else 0
    held, train = order[:n_held], order[n_held:]

    name = type(model).__name__.lower()
    params = list(policy.q_net.parameters()) if name == "dqn" else (
        list(policy.actor.parameters()) if name == "sac" else list(policy.parameters())
    )
    optimiser = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    policy.set_training_mode(True)

    def evaluate(index: torch.Tensor) -> dict[str, float]:
        policy.set_training_mode(False)
        with torch.no_grad():
            loss, metrics = bc_loss(model, obs[index], acts[index])
        policy.set_training_mode(True)
        out = {"held_out_loss": float(loss)}
        for key in ("accuracy", "mse"):
            if key in metrics:
                out[f"held_out_{key}"] = float(metrics[key])
        return out

    best_loss, best_epoch, best_state = math.inf, 0, None
    history: list[dict[str, float]] = []
    steps, stop_reason, epoch = 0, "epochs", 0
    train_loss = math.nan
    for epoch in range(1, config.epochs + 1):
        shuffled = train[torch.randperm(train.numel(), generator=generator).to(device)]
        total, batches = 0.0, 0
        for start in range(0, shuffled.numel(), config.batch_size):
            index = shuffled[start : start + config.batch_size]
            loss, _ = bc_loss(model, obs[index], acts[index], entropy_weight=config.entropy_weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            batches += 1
            steps += 1
        train_loss = total / max(batches, 1)
        record = {"epoch": float(epoch), "train_loss": train_loss}
        record.update(evaluate(held if n_held else train))
        history.append(record)
        if record["held_out_loss"] < best_loss:
            best_loss, best_epoch = record["held_out_loss"], epoch
            best_state = copy.deepcopy(policy.state_dict())
        if callback is not None and not callback.on_step(epoch, record):
            stop_reason = "callback"
            break
    if best_state is not None and n_held:
        policy.load_state_dict(best_state)
    if name == "dqn":  # act greedily on the cloned Q-values from the first TD target on
        policy.q_net_target.load_state_dict(policy.q_net.state_dict())
    policy.set_training_mode(False)
    final = evaluate(held if n_held else train)
    return BCResult(
        epochs=epoch,
        steps=steps,
        best_epoch=best_epoch,
        stop_reason=stop_reason,
        train_loss=train_loss,
        held_out_loss=final["held_out_loss"],
        held_out_accuracy=final.get("held_out_accuracy", math.nan),
        held_out_mse=final.get("held_out_mse", math.nan),
        wall_time_s=time.perf_counter() - started,
        history=history,
    )
