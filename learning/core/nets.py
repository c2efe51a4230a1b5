"""Reward ensembles: K nets r(s, a) evaluated together in one batched forward pass.

The K members' weights are stacked along a leading dimension, so a layer is one batched matrix
multiply (``torch.baddbmm``) or, for pixels, one grouped convolution (``groups=K``): no Python
loop over members, so K members cost one kernel launch per layer, not K.

Inputs are standardised with statistics fitted on the training data (``fit_input_normalisation``);
after training, each member's per-step output is standardised over the training states
(``fit_output_normalisation``), which puts members on one scale for disagreement and gives the
policy learner rewards of unit scale. Bradley–Terry only identifies r up to a per-member shift
(and the scale through the data's noise), so this changes no preference the model predicts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from learning.core.configs import RewardNetConfig

__all__ = ["EnsembleConvTorso", "EnsembleLinear", "RewardEnsemble", "activation_fn"]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "silu": F.silu,
}

# Nature-DQN torso: (kernel, stride) per conv layer.
_CNN_LAYERS = ((8, 4), (4, 2), (3, 1))


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return _ACTIVATIONS[name]


def _uniform_(tensor: torch.Tensor, bound: float, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)


class EnsembleLinear(nn.Module):
    """K independent linear layers: (K, N, in) → (K, N, out), as one ``baddbmm``.

    weight: (K, in, out); bias: (K, 1, out). Initialised per member like ``nn.Linear``
    (uniform in ±1/√in), from ``generator`` when given.
    """

    def __init__(
        self,
        members: int,
        in_features: int,
        out_features: int,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features))
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        _uniform_(self.weight, bound, generator)
        _uniform_(self.bias, bound, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (K, N, in) — or (1, N, in) for an input shared by all members (broadcast by matmul).
        if x.shape[0] == self.weight.shape[0]:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.matmul(x, self.weight) + self.bias


class EnsembleConvTorso(nn.Module):
    """K small CNNs as grouped convolutions: (K, B, C, H, W) → (K, B, features).

    Member k's channels sit at ``[k·c, (k+1)·c)`` of each layer, and ``groups=K`` keeps the
    members from seeing each other's channels.
    """

    def __init__(
        self,
        members: int,
        image_shape: tuple[int, int, int],
        channels: tuple[int, int, int],
        activation: str,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.members = members
        self.activation = activation_fn(activation)
        c_in, height, width = image_shape
        convs = []
        for (kernel, stride), c_out in zip(_CNN_LAYERS, channels):
            conv = nn.Conv2d(members * c_in, members * c_out, kernel, stride, groups=members)
            bound = 1.0 / math.sqrt(c_in * kernel * kernel)
            _uniform_(conv.weight, bound, generator)
            _uniform_(conv.bias, bound, generator)  # type: ignore[arg-type]
            convs.append(conv)
            height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
            if height < 1 or width < 1:
                raise ValueError(
                    f"Images of {image_shape[1]}×{image_shape[2]} are too small for the CNN torso "
                    "(needs at least 36×36)."
                )
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.out_features = c_in * height * width

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        members, batch = pixels.shape[:2]
        if members == 1 and self.members > 1:  # one image batch shared by all members
            pixels = pixels.expand(self.members, *pixels.shape[1:])
        # (K, B, C, H, W) → (B, K·C, H, W): member-major channels, as groups=K expects.
        x = pixels.transpose(0, 1).reshape(batch, -1, *pixels.shape[-2:])
        for conv in self.convs:
            x = self.activation(conv(x))
        # (B, K·c, h, w) → (K, B, c·h·w)
        return x.reshape(batch, self.members, -1).transpose(0, 1)


class RewardEnsemble(nn.Module):
    """K reward nets r(s, a), standardised inputs and outputs.

    ``forward(obs, act)`` takes inputs shared by all members — obs (..., *obs_shape),
    act (..., act_dim) — and returns per-step rewards (K, ...).
    ``member_rewards(obs, act)`` takes a separate batch per member — obs (K, N, *obs_shape),
    act (K, N, act_dim) — and returns (K, N); training uses it (each member its own minibatch).
    """

    def __init__(
        self,
        config: RewardNetConfig,
        obs_shape: tuple[int, ...],
        act_dim: int,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.act_dim = int(act_dim) if config.use_actions else 0
        self.members = config.ensemble_size
        self.activation = activation_fn(config.activation)
        pixels = config.cnn
        if pixels and len(self.obs_shape) != 3:
            raise ValueError(f"cnn=True needs (C, H, W) observations, got {self.obs_shape}.")
        if not pixels and len(self.obs_shape) != 1:
            raise ValueError(
                f"An MLP reward net needs flat (obs_dim,) observations, got {self.obs_shape}; "
                "set cnn=True for images."
            )
        self.torso: EnsembleConvTorso | None = None
        if pixels:
            self.torso = EnsembleConvTorso(
                self.members,
                self.obs_shape,
                config.cnn_channels,
                config.activation,
                generator=generator,  # type: ignore[arg-type]
            )
            obs_features = self.torso.out_features
            stat_shape: tuple[int, ...] = (1,)  # one mean/std over all pixels
        else:
            obs_features = self.obs_shape[0]
            stat_shape = self.obs_shape
        widths = [obs_features + self.act_dim, *config.hidden_sizes, 1]
        self.layers = nn.ModuleList(
            EnsembleLinear(self.members, w_in, w_out, generator=generator)
            for w_in, w_out in itertools.pairwise(widths)
        )
        self.register_buffer("obs_mean", torch.zeros(stat_shape))
        self.register_buffer("obs_std", torch.ones(stat_shape))
        self.register_buffer("act_mean", torch.zeros(self.act_dim))
        self.register_buffer("act_std", torch.ones(self.act_dim))
        self.register_buffer("out_shift", torch.zeros(self.members))
        self.register_buffer("out_scale", torch.ones(self.members))

    # ------------------------------------------------------------------ normalisation

    def _scale_pixels(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()

    @torch.no_grad()
    def fit_input_normalisation(
        self, observations: torch.Tensor, actions: torch.Tensor | None
    ) -> None:
        """Standardise inputs with the mean and std of ``observations`` (..., *obs_shape) and
        ``actions`` (..., act_dim); std is floored at 1e-6 so constant features stay finite."""
        obs_dims = len(self.obs_shape)
        if self.torso is not None:
            flat = self._scale_pixels(observations).reshape(-1)
        else:
            flat = observations.float().reshape(-1, *self.obs_shape[-obs_dims:])
        self.obs_mean.copy_(flat.mean(0).reshape(self.obs_mean.shape))
        self.obs_std.copy_(flat.std(0, unbiased=False).clamp_min(1e-6).reshape(self.obs_std.shape))
        if self.act_dim and actions is not None:
            acts = actions.float().reshape(-1, self.act_dim)
            self.act_mean.copy_(acts.mean(0))
            self.act_std.copy_(acts.std(0, unbiased=False).clamp_min(1e-6))

    @torch.no_grad()
    def restandardise_inputs(self, observations: torch.Tensor, actions: torch.Tensor | None) -> None:
        """Refit the input statistics to new data (as :meth:`fit_input_normalisation`) without
        changing the function the net computes: the first layer absorbs the change, since
        (x − m_old)/s_old = (x − m_new)/s_new · s_new/s_old + (m_new − m_old)/s_old. Used to
        warm-start on data that has moved (a policy that now goes where the random one never
        went). Features that were constant before (std at the floor) get no correction: their
        normalised input was always 0, so the net never learned from them. Pixel nets refit
        their single statistic and keep their weights."""
        if self.torso is not None:
            self.fit_input_normalisation(observations, actions)
            return
        old_mean = torch.cat([self.obs_mean.reshape(-1), self.act_mean])
        old_std = torch.cat([self.obs_std.reshape(-1), self.act_std])
        self.fit_input_normalisation(observations, actions)
        new_mean = torch.cat([self.obs_mean.reshape(-1), self.act_mean])
        new_std = torch.cat([self.obs_std.reshape(-1), self.act_std])
        was_constant = old_std <= 1e-6
        scale = torch.where(was_constant, torch.ones_like(old_std), new_std / old_std)  # (in,)
        shift = torch.where(was_constant, torch.zeros_like(old_std), (new_mean - old_mean) / old_std)
        first = self.layers[0]  # weight (K, in, out), bias (K, 1, out)
        first.bias += torch.einsum("i,kio->ko", shift, first.weight)[:, None, :]
        first.weight *= scale[None, :, None]

    @torch.no_grad()
    def fit_output_normalisation(self, raw_rewards: torch.Tensor) -> None:
        """Set each member's output to zero mean, unit std over ``raw_rewards`` (K, N), which
        must be *unnormalised* per-step rewards (``normalise_output=False``)."""
        self.out_shift.copy_(raw_rewards.float().mean(1))
        self.out_scale.copy_(raw_rewards.float().std(1, unbiased=False).clamp_min(1e-8))

    # ------------------------------------------------------------------ forward

    def member_rewards(
        self, obs: torch.Tensor, act: torch.Tensor | None, *, normalise_output: bool = True
    ) -> torch.Tensor:
        """Per-step rewards for per-member batches: obs (K|1, N, *obs_shape), act (K|1, N,
        act_dim) → (K, N). A leading 1 shares the batch across members without copying."""
        if self.torso is not None:
            pixels = (self._scale_pixels(obs) - self.obs_mean) / self.obs_std
            x = self.torso(pixels)  # (K, N, features)
        else:
            x = (obs.float() - self.obs_mean) / self.obs_std  # (K|1, N, obs_dim)
        if self.act_dim:
            if act is None:
                raise ValueError("This reward net takes actions; pass act.")
            a = (act.float() - self.act_mean) / self.act_std
            if a.shape[0] != x.shape[0]:
                a = a.expand(x.shape[0], *a.shape[1:])
            x = torch.cat([x, a], dim=-1)  # (K|1, N, features + act_dim)
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        reward = self.layers[-1](x).squeeze(-1)  # (K, N)
        if normalise_output:
            reward = (reward - self.out_shift[:, None]) / self.out_scale[:, None]
        return reward

    def forward(
        self, obs: torch.Tensor, act: torch.Tensor | None = None, *, normalise_output: bool = True
    ) -> torch.Tensor:
        """Rewards of every member for shared inputs: obs (..., *obs_shape) → (K, ...)."""
        batch_shape = obs.shape[: obs.ndim - len(self.obs_shape)]
        flat_obs = obs.reshape(1, -1, *self.obs_shape)  # (1, N, *obs_shape)
        flat_act = act.reshape(1, -1, act.shape[-1]) if (act is not None and self.act_dim) else None
        reward = self.member_rewards(flat_obs, flat_act, normalise_output=normalise_output)
        return reward.reshape(self.members, *batch_shape)

    def segment_returns(
        self, obs: torch.Tensor, act: torch.Tensor | None, *, normalise_output: bool = True
    ) -> torch.Tensor:
        """Summed rewards of segments: obs (B, T, *obs_shape), act (B, T, act_dim) → (K, B)."""
        return self.forward(obs, act, normalise_output=normalise_output).sum(-1)

    # ------------------------------------------------------------------ one member

    def member_module(self, k: int) -> nn.Module:
        """Member ``k`` as a plain stand-alone module (``nn.Linear``/``nn.Conv2d`` layers with
        copied weights): obs (N, *obs_shape), act (N, act_dim) → (N,). For export and for
        checking the batched forward against one member at a time."""
        return _SingleMember(self, k)


class _SingleMember(nn.Module):
    def __init__(self, ensemble: RewardEnsemble, k: int) -> None:
        super().__init__()
        self.activation = ensemble.activation
        self.act_dim = ensemble.act_dim
        self.is_cnn = ensemble.torso is not None
        for name in ("obs_mean", "obs_std", "act_mean", "act_std"):
            self.register_buffer(name, getattr(ensemble, name).clone())
        self.out_shift = float(ensemble.out_shift[k])
        self.out_scale = float(ensemble.out_scale[k])
        self.convs = nn.ModuleList()
        if ensemble.torso is not None:
            for grouped in ensemble.torso.convs:
                assert isinstance(grouped, nn.Conv2d)
                c_out = grouped.out_channels // ensemble.members
                c_in = grouped.in_channels // ensemble.members
                conv = nn.Conv2d(c_in, c_out, grouped.kernel_size, grouped.stride)
                with torch.no_grad():
                    conv.weight.copy_(grouped.weight[k * c_out : (k + 1) * c_out])
                    conv.bias.copy_(grouped.bias[k * c_out : (k + 1) * c_out])  # type: ignore[index]
                self.convs.append(conv)
        self.linears = nn.ModuleList()
        for stacked in ensemble.layers:
            assert isinstance(stacked, EnsembleLinear)
            w_in, w_out = stacked.weight.shape[1:]
            linear = nn.Linear(w_in, w_out)
            with torch.no_grad():
                linear.weight.copy_(stacked.weight[k].T)
                linear.bias.copy_(stacked.bias[k, 0])
            self.linears.append(linear)

    def forward(self, obs: torch.Tensor, act: torch.Tensor | None = None) -> torch.Tensor:
        if self.is_cnn:
            x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()
            x = (x - self.obs_mean) / self.obs_std
            for conv in self.convs:
                x = self.activation(conv(x))
            x = x.flatten(1)
        else:
            x = (obs.float() - self.obs_mean) / self.obs_std
        if self.act_dim:
            assert act is not None
            x = torch.cat([x, (act.float() - self.act_mean) / self.act_std], dim=-1)
        for linear in self.linears[:-1]:
            x = self.activation(linear(x))
        return (self.linears[-1](x).squeeze(-1) - self.out_shift) / self.out_scale
