"""Adversarial value learners from desirable clips: GAIL (Ho & Ermon 2016) and AIRL (Fu et al.
2018), with the clips labelled desirable as the expert set and the policy's own rollouts plus
the clips labelled undesirable as negatives.

The discriminator (:class:`Discriminator`):

- GAIL: D(s, a) = σ(g(s, a)).
- AIRL: D(s, a, s') = exp f / (exp f + π(a|s)) with f(s, a, s') = g(s, a) + γ·h(s') − h(s):
  a reward term g plus potential shaping by h; the logit is f − log π(a|s), with π the
  generator's current policy.

Both export the reward their logit defines, through :class:`AdversarialReward` (a
:class:`~learning.core.finetune.LearnedReward`): GAIL log D − log(1 − D) = g(s, a); AIRL
f(s, a, s') (the entropy term log π is the RL algorithm's own business: SAC adds it, and
PPO's entropy bonus stands in for it). Episode ends use absorbing states (Kostrikov et al.
2019, as in :mod:`learning.core.finetune`): a policy episode that terminates continues into an
absorbing state the expert never visits, and the reward is measured from that state's value,
so the learner neither survives nor dies for the sign of a logit's shift.

Stability: an R1 gradient penalty (Mescheder et al. 2018) on the expert inputs,
``gradient_penalty · E_expert ||∇ logit||²``, plus input standardisation; for GAIL also no
update on a minibatch the discriminator already classifies with accuracy above ``max_accuracy``
(0.8), so it never wins outright and its reward stays informative.

The training recipe (:func:`train_adversarial`) alternates two named steps:
:func:`generator_step` (the SB3 policy trains against the current discriminator's reward for
``steps_per_round`` env steps and the episodes it played become negatives) and
:func:`discriminator_step` (one minibatch update of the discriminator; ``discriminator_updates``
of them per round), then rewrites the reward in the replay buffer of an off-policy learner.
"""

from learning.core.adversarial.checkpoints import (
    DISCRIMINATOR_CHECKPOINT_FORMAT,
    DiscriminatorCheckpointError,
    load_discriminator,
    save_discriminator,
)
from learning.core.adversarial.config import ADVERSARIAL_KINDS, AdversarialConfig
from learning.core.adversarial.data import (
    Transitions,
    demonstrations_from_expert,
    episode_transitions,
    segment_transitions,
)
from learning.core.adversarial.discriminator import (
    AdversarialReward,
    Discriminator,
    discriminator_loss,
    gradient_penalty,
    policy_log_prob,
)
from learning.core.adversarial.training import (
    AdversarialResult,
    discriminator_step,
    generator_step,
    train_adversarial,
)

__all__ = [
    "ADVERSARIAL_KINDS",
    "DISCRIMINATOR_CHECKPOINT_FORMAT",
    "AdversarialConfig",
    "AdversarialResult",
    "AdversarialReward",
    "Discriminator",
    "DiscriminatorCheckpointError",
    "Transitions",
    "demonstrations_from_expert",
    "discriminator_loss",
    "discriminator_step",
    "episode_transitions",
    "generator_step",
    "gradient_penalty",
    "load_discriminator",
    "policy_log_prob",
    "save_discriminator",
    "segment_transitions",
    "train_adversarial",
]
