"""Fitting a reward ensemble to preferences: the training loop, read top to bottom.

Recipe (Christiano et al. 2017, §2.2.3; the ensemble is trained as one batched model):

1. Split the pairs into training and held-out sets (seeded).
2. Build the ensemble; standardise its inputs with the dataset's statistics.
3. Each epoch, every member draws its own bootstrap resample (or shuffle) of the training
   pairs; a step takes one minibatch per member, gathers the 2·T steps of each pair, runs all
   members in one forward pass, sums rewards into segment returns and takes an Adam step on
   the Bradley–Terry loss (plus the desirability loss when clips carry labels).
4. After each epoch: held-out loss and accuracy; keep the best epoch's weights; stop after
   ``patience`` epochs without improvement, or when the callback says stop; otherwise hand a
   :class:`TrainingState` to the callback's ``on_checkpoint`` (when it has one), from which a
   later call continues exactly where this one was (``start=``). A held-out split smaller than
   ``min_held_out_pairs`` is only reported: it neither stops training nor picks the epoch.
5. Restore the best weights (the last epoch's when the split does not steer), standardise
   the output, compute held-out accuracy, ECE and the correlation with the true return.

Data parallel: when ``torch.distributed`` is initialised (under ``torchrun``, see
:mod:`learning.core.distributed`), every rank holds the whole dataset and draws the same
resamples from the same seed; each step's minibatch is split across the ranks, each rank
computes its share of the loss weighted by its share of the pairs, and DDP averages the
gradients, so the update equals the one-process update on the whole minibatch (up to the
order of floating-point sums). Rank 0 alone reports and checkpoints; its decisions (stop,
early stopping) are broadcast, so the ranks never diverge.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from learning.core.callbacks import CheckpointCallback, TrainingCallback
from learning.core.configs import RewardNetConfig, RewardTrainingConfig
from learning.core.data import PreferenceDataset
from learning.core.losses import bradley_terry_loss, desirability_loss, preference_probability
from learning.core.metrics import expected_calibration_error, pearson, preference_accuracy, spearman
from learning.core.nets import RewardEnsemble

__all__ = [
    "ResumeMismatch",
    "TrainingResult",
    "TrainingState",
    "resolve_device",
    "segment_returns",
    "train_reward_model",
]


class DeviceUnavailable(RuntimeError):
    """CUDA was asked for on a machine without it."""


class ResumeMismatch(ValueError):
    """A starting state was saved for another net shape or dataset than the one given."""


@dataclass
class TrainingState:
    """Where training stands after ``epoch`` complete epochs: everything the loop carries from
    one epoch to the next, so training from it continues rather than restarts (same weights,
    same Adam moments, same random draws, same early-stopping bookkeeping).

    Only tensors, numbers, strings, lists and dicts, so a checkpoint of it loads with
    ``torch.load(weights_only=True)``. The trainer hands out its live tensors (no copies):
    save or copy them before ``on_checkpoint`` returns.
    """

    net_config: RewardNetConfig
    train_config: RewardTrainingConfig
    obs_shape: tuple[int, ...]
    act_dim: int
    epoch: int
    """Epochs completed; training goes on with epoch ``epoch + 1``."""
    step: int
    """Optimiser steps taken so far."""
    model: dict[str, torch.Tensor]
    """The ensemble's state dict now (input-normalisation buffers included)."""
    optimiser: dict[str, Any]
    """Adam's state dict (moments and step counts)."""
    generator: torch.Tensor
    """The CPU generator's state (``torch.Generator.get_state()``, a uint8 tensor): the next
    epoch's bootstrap draws come from it."""
    best_loss: float
    best_epoch: int
    bad_epochs: int
    best_model: dict[str, torch.Tensor] | None
    """The best epoch's weights so far (restored at the end), or None before any."""
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(
            "device='cuda' was requested but torch sees no CUDA device; use 'auto' or 'cpu'."
        )
    return torch.device(name)


@dataclass
class TrainingResult:
    """What a reward-model run achieved. Held-out metrics are NaN without a held-out split;
    correlations are NaN without true returns."""

    epochs: int
    steps: int
    best_epoch: int
    stop_reason: str  # "max_epochs" | "early_stopping" | "callback"
    train_loss: float
    held_out_loss: float
    held_out_accuracy: float
    held_out_ece: float
    pearson: float
    spearman: float
    num_train_pairs: int
    num_held_out_pairs: int
    device: str
    wall_time_s: float
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Everything but the per-epoch history, JSON-able."""
        data = asdict(self)
        data.pop("history")
        return data


class _StepReturns(nn.Module):
    """What one training step runs: per-member minibatches of pairs → segment returns.

    forward(segments (K, b, 2) int64, observations (N, T, *obs_shape), actions (N, T, act_dim)
    or None) → raw returns (K, b, 2) float32. The gather, every member's forward and the sums
    are one module, so DDP and ``torch.compile`` wrap exactly the step (the dataset tensors
    are arguments, not attributes, so compilation never copies them into the graph).
    """

    def __init__(self, ensemble: RewardEnsemble) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(
        self, segments: torch.Tensor, observations: torch.Tensor, actions: torch.Tensor | None
    ) -> torch.Tensor:
        members, b = segments.shape[0], segments.shape[1]
        length = observations.shape[1]
        obs = observations[segments].reshape(members, b * 2 * length, *observations.shape[2:])
        act = (
            actions[segments].reshape(members, b * 2 * length, actions.shape[-1])
            if actions is not None
            else None
        )
        rewards = self.ensemble.member_rewards(obs, act, normalise_output=False)  # (K, b·2·T)
        return rewards.float().reshape(members, b, 2, length).sum(-1)


def _distributed() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless a process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _chunks(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


@torch.no_grad()
def segment_returns(
    ensemble: RewardEnsemble,
    dataset: PreferenceDataset,
    segments: torch.Tensor,
    *,
    normalise_output: bool = True,
    chunk_rows: int = 1 << 20,
) -> torch.Tensor:
    """Every member's return of the given segments (S,) → (K, S), in chunks of ≤ chunk_rows
    state-action rows, so evaluation memory stays bounded on large datasets."""
    per_chunk = max(1, chunk_rows // dataset.segment_length)
    out = []
    for part in _chunks(int(segments.shape[0]), per_chunk):
        index = segments[part]
        act = dataset.actions[index] if dataset.actions is not None else None
        out.append(
            ensemble.segment_returns(
                dataset.observations[index], act, normalise_output=normalise_output
            )
        )
    return torch.cat(out, dim=1)


@torch.no_grad()
def _fit_output_normalisation(
    ensemble: RewardEnsemble, dataset: PreferenceDataset, chunk_rows: int
) -> None:
    """Standardise each member's per-step reward over all states of the dataset, accumulating
    sums in float64 so 10⁷ rows do not need one big tensor."""
    total = torch.zeros(ensemble.members, dtype=torch.float64, device=dataset.device)
    squares = torch.zeros_like(total)
    per_chunk = max(1, chunk_rows // dataset.segment_length)
    for part in _chunks(dataset.num_segments, per_chunk):
        act = dataset.actions[part] if dataset.actions is not None else None
        rewards = ensemble(
            dataset.observations[part], act, normalise_output=False
        ).double()  # (K, n, T)
        total += rewards.sum((1, 2))
        squares += (rewards**2).sum((1, 2))
    rows = dataset.num_segments * dataset.segment_length
    mean = total / rows
    std = (squares / rows - mean**2).clamp_min(0).sqrt()
    ensemble.out_shift.copy_(mean.float())
    ensemble.out_scale.copy_(std.float().clamp_min(1e-8))


@torch.no_grad()
def _held_out_predictions(
    ensemble: RewardEnsemble,
    dataset: PreferenceDataset,
    pair_index: torch.Tensor,
    config: RewardTrainingConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw member returns of the held-out pairs' segments: (K, M, 2), their segment ids
    (M, 2) and their unique segment ids."""
    pairs = dataset.pairs[pair_index]  # (M, 2)
    unique, inverse = torch.unique(pairs, return_inverse=True)
    returns = segment_returns(
        ensemble, dataset, unique, normalise_output=False, chunk_rows=config.eval_chunk_rows
    )  # (K, S)
    return returns[:, inverse], pairs, unique


def _agree(wants_stop: bool, device: torch.device, world: int) -> bool:
    """Rank 0's stop decision, on every rank (a no-op without a process group)."""
    if world == 1:
        return wants_stop
    flag = torch.tensor([1.0 if wants_stop else 0.0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _check_start(
    start: TrainingState, net_config: RewardNetConfig, data: PreferenceDataset
) -> None:
    if start.net_config != net_config:
        raise ResumeMismatch(
            f"The starting state was saved for net {start.net_config}, not {net_config}; "
            "resume with the configs it was saved with, or train from scratch."
        )
    if tuple(start.obs_shape) != tuple(data.obs_shape) or start.act_dim != data.act_dim:
        raise ResumeMismatch(
            f"The starting state expects observations {tuple(start.obs_shape)} and act_dim "
            f"{start.act_dim}; the dataset has {tuple(data.obs_shape)} and {data.act_dim}."
        )


def train_reward_model(
    dataset: PreferenceDataset,
    net_config: RewardNetConfig,
    train_config: RewardTrainingConfig,
    callback: TrainingCallback | None = None,
    *,
    start: TrainingState | None = None,
    init: RewardEnsemble | None = None,
    held_out: torch.Tensor | None = None,
) -> tuple[RewardEnsemble, TrainingResult]:
    """Fit a K-member reward ensemble to ``dataset``'s preferences; see the module docstring.

    Deterministic for a given ``train_config.seed`` on CPU. The callback gets
    ``on_step(step, metrics)`` after every epoch (and every ``report_every_steps`` steps when
    set) with float metrics (``epoch``, ``train_loss``, ``train_accuracy``, and after epochs
    ``held_out_loss``, ``held_out_accuracy``); returning False stops training, keeping the best
    weights so far.

    If the callback also has ``on_checkpoint(state)`` (:class:`CheckpointCallback`), it gets a
    :class:`TrainingState` after every epoch that training goes on from; passing such a state
    back as ``start`` resumes at the next epoch, and training N epochs, saving, loading and
    training on to 2N gives the same weights as 2N epochs in one call (on CPU, bit for bit).
    ``train_config`` may differ from the state's in ``max_epochs`` (to extend a run); the
    split, resampling and net shape come from the same seed and configs.

    ``init`` warm-starts from another ensemble of the same net config and shapes (typically
    the previous round's, fitted on a subset of these labels): training starts from the
    function it had learned, with input statistics refitted to this dataset and its first
    layer adjusted to match (:meth:`RewardEnsemble.restandardise_inputs`); the optimiser
    starts fresh. ``held_out`` (P,) bool, True = held out,
    replaces the seeded random split — a warm start needs a split that is stable across
    calls, or pairs the previous model trained on would be held out and flatter its
    held-out loss.
    """
    cfg = train_config
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    rank, world = _distributed()
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # one GPU a rank
    data = dataset.to(device)
    generator = torch.Generator().manual_seed(cfg.seed)  # init, resampling and order, on CPU

    # 1. Split by pair.
    if held_out is not None:
        if held_out.shape != (data.num_pairs,) or held_out.dtype != torch.bool:
            raise ValueError(
                f"held_out must be a ({data.num_pairs},) bool mask over the pairs, "
                f"got {tuple(held_out.shape)} {held_out.dtype}."
            )
        mask = held_out.to(device)
        train_index, held_index = (~mask).nonzero().flatten(), mask.nonzero().flatten()
    else:
        train_index, held_index = data.split(cfg.held_out_fraction, seed=cfg.seed)
    if train_index.numel() == 0:
        raise ValueError("No preference pairs to train on.")
    # On a few held-out pairs the loss jumps by whole pairs: early stopping on it stops at a
    # random epoch (10 pairs stopped a 50-label run at epoch 22, test accuracy 0.83 vs 0.89).
    steering = held_index.numel() > 0 and held_index.numel() >= cfg.min_held_out_pairs

    # 2. Model, input statistics, optimiser.
    ensemble = RewardEnsemble(net_config, data.obs_shape, data.act_dim, generator=generator).to(
        device
    )
    if init is not None and start is None:
        if (init.config, init.obs_shape, init.act_dim) != (
            ensemble.config, ensemble.obs_shape, ensemble.act_dim
        ):
            raise ResumeMismatch(
                "init was built for another net config or data shape; warm-start only from "
                "an ensemble of the same RewardNetConfig on the same observation/action spaces."
            )
        ensemble.load_state_dict(init.state_dict())
        # The statistics follow the data (later rounds visit states the random policy never
        # did); the first layer is adjusted so the warm start is still init's function.
        ensemble.restandardise_inputs(data.observations, data.actions)
    else:
        ensemble.fit_input_normalisation(data.observations, data.actions)
    # The fused kernel updates every parameter in one launch (CUDA only).
    optimiser = torch.optim.Adam(
        ensemble.parameters(),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        fused=device.type == "cuda",
    )
    step_returns: nn.Module = _StepReturns(ensemble)
    if world > 1:
        # Buffers (normalisation statistics) are equal on every rank by construction.
        step_returns = DistributedDataParallel(
            step_returns,
            device_ids=[device] if device.type == "cuda" else None,
            broadcast_buffers=False,
        )
    if cfg.compile and device.type == "cuda":
        step_returns = torch.compile(step_returns, mode=cfg.compile_mode)  # type: ignore[assignment]
    checkpointer = callback if isinstance(callback, CheckpointCallback) else None
    use_autocast = device.type == "cuda" and cfg.mixed_precision
    members = ensemble.members
    n_train = int(train_index.numel())
    batch = min(cfg.batch_size, n_train)
    labelled = data.desirability is not None and cfg.desirability_weight > 0

    def autocast() -> contextlib.AbstractContextManager[Any]:
        # bf16 needs no loss scaling; CPU autocast is slower than float32 for these sizes.
        return (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if use_autocast
            else contextlib.nullcontext()
        )

    def held_out_metrics() -> dict[str, float]:
        ensemble.eval()
        with autocast():
            returns, _, _ = _held_out_predictions(ensemble, data, held_index, cfg)
        loss, metrics = bradley_terry_loss(
            returns[..., 0].float(),
            returns[..., 1].float(),
            data.preferences[held_index],
            random_response=cfg.random_response,
        )
        ensemble.train()
        return {"held_out_loss": float(loss), "held_out_accuracy": float(metrics["accuracy"])}

    best_loss, best_epoch, bad_epochs = math.inf, 0, 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = []
    step, epoch, stop_reason = 0, 0, "max_epochs"
    train_loss = math.nan
    if start is not None:
        _check_start(start, net_config, data)
        # The generator already made the initial weights above; the state's weights replace
        # them and its generator state replaces the generator's, so the draws continue.
        ensemble.load_state_dict(start.model)
        optimiser.load_state_dict(start.optimiser)
        generator.set_state(start.generator.cpu())
        best_loss, best_epoch, bad_epochs = start.best_loss, start.best_epoch, start.bad_epochs
        best_state = (
            {k: v.to(device) for k, v in start.best_model.items()}
            if start.best_model is not None
            else None
        )
        history = [dict(record) for record in start.history]
        step, epoch = start.step, start.epoch
        train_loss = history[-1]["train_loss"] if history else math.nan
    first_epoch = epoch + 1

    # 3. Epochs of minibatch steps, all members at once.
    for epoch in range(first_epoch, cfg.max_epochs + 1):
        if cfg.bootstrap:
            draw = torch.randint(n_train, (members, n_train), generator=generator)
        else:
            draw = torch.rand(members, n_train, generator=generator).argsort(dim=1)
        order = train_index[draw.to(device)]  # (K, n_train) pair ids, one row per member
        loss_sum = torch.zeros((), device=device)
        accuracy_sum = torch.zeros((), device=device)
        stop, epoch_steps = False, 0
        for part in _chunks(n_train, batch):
            # Under DDP this rank takes its share of the minibatch's pairs; `share` weights its
            # loss so that DDP's average over ranks is the mean over the whole minibatch.
            full = order[:, part]  # (K, b)
            pair_ids = full.tensor_split(world, dim=1)[rank] if world > 1 else full
            share = pair_ids.shape[1] / full.shape[1] * world
            segments = data.pairs[pair_ids]  # (K, b_rank, 2)
            with autocast():
                returns = step_returns(segments, data.observations, data.actions)  # (K, b, 2)
            if segments.shape[1] == 0:  # more ranks than pairs: join the gradient average
                loss, metrics = returns.sum() * 0.0, {"loss": 0.0, "accuracy": 0.0}
            else:
                loss, metrics = bradley_terry_loss(
                    returns[..., 0],
                    returns[..., 1],
                    data.preferences[pair_ids],
                    random_response=cfg.random_response,
                )
                loss = loss * share
                if labelled:
                    assert data.desirability is not None
                    labels = data.desirability[segments]
                    aux, _ = desirability_loss(returns, labels)
                    if world > 1:  # a mean over labelled clips: weight by this rank's share
                        known = (~torch.isnan(labels)).sum()
                        known_all = (~torch.isnan(data.desirability[data.pairs[full]])).sum()
                        aux = aux * (known / known_all.clamp_min(1) * world)
                    loss = loss + cfg.desirability_weight * aux
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            epoch_steps += 1
            loss_sum += metrics["loss"] * (share / world)
            accuracy_sum += metrics["accuracy"] * (share / world)
            if cfg.report_every_steps and step % cfg.report_every_steps == 0:
                report = {
                    "epoch": float(epoch),
                    "train_loss": float(metrics["loss"]),
                    "train_accuracy": float(metrics["accuracy"]),
                }
                wants_stop = (
                    rank == 0 and callback is not None and not callback.on_step(step, report)
                )
                if _agree(wants_stop, device, world):
                    stop = True
                    break

        # 4. End of epoch: held-out loss, best weights, early stopping, report.
        if world > 1:  # each rank summed its weighted share: the sum is the whole minibatch's
            dist.all_reduce(loss_sum)
            dist.all_reduce(accuracy_sum)
        train_loss = float(loss_sum) / epoch_steps
        record = {
            "epoch": float(epoch),
            "step": float(step),
            "train_loss": train_loss,
            "train_accuracy": float(accuracy_sum) / epoch_steps,
        }
        if held_index.numel():
            record.update(held_out_metrics())
            if world > 1:  # rank 0's numbers decide, so every rank keeps the same best epoch
                values = torch.tensor(
                    [record["held_out_loss"], record["held_out_accuracy"]], device=device
                )
                dist.broadcast(values, src=0)
                record["held_out_loss"], record["held_out_accuracy"] = values.tolist()
        history.append(record)
        if not steering:
            best_epoch = epoch  # nothing to select by: the last epoch's weights are the result
        elif record["held_out_loss"] < best_loss - 1e-7:
            best_loss, best_epoch, bad_epochs = record["held_out_loss"], epoch, 0
            best_state = {k: v.detach().clone() for k, v in ensemble.state_dict().items()}
        else:
            bad_epochs += 1
        if stop:
            stop_reason = "callback"
            break
        wants_stop = rank == 0 and callback is not None and not callback.on_step(step, record)
        if _agree(wants_stop, device, world):
            stop_reason = "callback"
            break
        if cfg.patience and steering and bad_epochs >= cfg.patience:
            stop_reason = "early_stopping"
            break
        if checkpointer is not None and rank == 0:
            checkpointer.on_checkpoint(
                TrainingState(
                    net_config=net_config,
                    train_config=cfg,
                    obs_shape=tuple(data.obs_shape),
                    act_dim=data.act_dim,
                    epoch=epoch,
                    step=step,
                    model=ensemble.state_dict(),
                    optimiser=optimiser.state_dict(),
                    generator=generator.get_state(),
                    best_loss=best_loss,
                    best_epoch=best_epoch,
                    bad_epochs=bad_epochs,
                    best_model=best_state,
                    history=list(history),
                )
            )

    # 5. Best weights, output normalisation, final metrics.
    if steering and best_state is not None:
        ensemble.load_state_dict(best_state)
    ensemble.eval()
    held_loss = held_accuracy = held_ece = corr_p = corr_s = math.nan
    if held_index.numel():
        with autocast():
            returns, _, unique = _held_out_predictions(ensemble, data, held_index, cfg)
        returns = returns.float()
        prefs = data.preferences[held_index]
        held_loss = float(
            bradley_terry_loss(
                returns[..., 0], returns[..., 1], prefs, random_response=cfg.random_response
            )[0]
        )
        p_a = preference_probability(
            returns[..., 0], returns[..., 1], random_response=cfg.random_response
        ).mean(0)
        held_accuracy = preference_accuracy(p_a, prefs)
        held_ece = expected_calibration_error(p_a, prefs)
    else:
        unique = torch.arange(data.num_segments, device=device)
    _fit_output_normalisation(ensemble, data, cfg.eval_chunk_rows)
    if data.true_returns is not None:
        predicted = (
            segment_returns(ensemble, data, unique, chunk_rows=cfg.eval_chunk_rows).float().mean(0)
        )
        corr_p = pearson(predicted, data.true_returns[unique])
        corr_s = spearman(predicted, data.true_returns[unique])

    result = TrainingResult(
        epochs=epoch,
        steps=step,
        best_epoch=best_epoch,
        stop_reason=stop_reason,
        train_loss=train_loss,
        held_out_loss=held_loss,
        held_out_accuracy=held_accuracy,
        held_out_ece=held_ece,
        pearson=corr_p,
        spearman=corr_s,
        num_train_pairs=n_train,
        num_held_out_pairs=int(held_index.numel()),
        device=str(device),
        wall_time_s=time.perf_counter() - started,
        history=history,
    )
    return ensemble, result
