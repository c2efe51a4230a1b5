"""Policy fine-tuning against a learned reward, with Stable-Baselines3 (PPO, SAC, DQN, A2C).

The pieces, each usable alone:

- :class:`LearnedReward` — the protocol every learned reward follows: a batch of transitions
  (obs (N, *obs_shape), encoded actions (N, act_dim), next obs (N, *obs_shape)) in, per-step
  rewards (N,) out, in one forward pass on its device. :class:`EnsembleReward` wraps a
  preference :class:`~learning.core.nets.RewardEnsemble` (mean − λ·std over members);
  :class:`learning.core.adversarial.AdversarialReward` wraps an AIRL/GAIL discriminator.
- :class:`LearnedRewardVecEnv` — an SB3 ``VecEnvWrapper`` that replaces the env's rewards by
  the learned reward, computed for all sub-envs in one batched call, keeps the true reward in
  ``info["true_reward"]`` and can record finished episodes (:class:`EpisodeRecorder`) so the
  loop can cut new segments from what the policy did.
- :func:`build_model` / :func:`train_policy` / :func:`relabel_replay_buffer` /
  :func:`evaluate_policy` — make an SB3 model from a :class:`FinetuneConfig`, run it for a
  number of env steps reporting through ``on_step(step, metrics) -> bool``, rewrite the
  rewards an off-policy replay buffer holds after the reward model changed (PEBBLE, Lee et al.
  2021), and measure the env's true return (research only: annotators never see it).
- :func:`finetune_policy` — the recipe: build (or take ``init``: a BC-initialised model, an
  imported SB3 checkpoint, or nothing = scratch), wrap, train, evaluate.
- :func:`save_policy` / :func:`load_policy` — checkpoints of ``policy.state_dict()`` plus the
  config, loaded with ``torch.load(weights_only=True)``.

Episode ends. A learned reward is defined on states the agent visits; when an episode
*terminates* (CartPole's pole falls) the agent visits nothing more, which is worth exactly 0
to the RL algorithm. Whether ending is good or bad then depends on the sign of the learned
reward, which Bradley–Terry does not identify (it is only defined up to a shift). We follow
the absorbing-state convention (Kostrikov et al. 2019, "Discriminator-Actor-Critic"): segments
that end by termination are padded with an *absorbing state* (observation zeros plus a flag
feature of 1, action zeros, true reward 0 — the fixed-horizon reading of the episode) and the
reward nets see that flag as an extra observation feature; the wrapper then subtracts the
learned reward of the absorbing state from every reward, so terminating is worth what the
labels say the absorbing state is worth, not an accident of the shift. This is a modelling
choice; with ``absorbing=False`` the raw learned reward is used.
"""

from learning.core.finetune.checkpoints import POLICY_CHECKPOINT_FORMAT, load_policy, save_policy
from learning.core.finetune.config import FINETUNE_ALGORITHMS, FinetuneConfig, resolve_algo
from learning.core.finetune.episodes import Episode, EpisodeRecorder
from learning.core.finetune.rewards import (
    EnsembleReward,
    LearnedReward,
    act_dim_of,
    add_absorbing_feature,
    encode_actions,
)
from learning.core.finetune.training import (
    EvaluationResult,
    FinetuneResult,
    LinearDecay,
    algo_name,
    attach_env,
    build_model,
    evaluate_policy,
    finetune_policy,
    relabel_replay_buffer,
    set_schedules,
    train_policy,
)
from learning.core.finetune.vec_env import LearnedRewardVecEnv, make_vec_env

__all__ = [
    "FINETUNE_ALGORITHMS",
    "POLICY_CHECKPOINT_FORMAT",
    "EnsembleReward",
    "Episode",
    "EpisodeRecorder",
    "EvaluationResult",
    "FinetuneConfig",
    "FinetuneResult",
    "LearnedReward",
    "LearnedRewardVecEnv",
    "LinearDecay",
    "act_dim_of",
    "add_absorbing_feature",
    "algo_name",
    "attach_env",
    "build_model",
    "encode_actions",
    "evaluate_policy",
    "finetune_policy",
    "load_policy",
    "make_vec_env",
    "relabel_replay_buffer",
    "set_schedules",
    "resolve_algo",
    "save_policy",
    "train_policy",
]
