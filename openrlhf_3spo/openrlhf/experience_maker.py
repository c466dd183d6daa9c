"""The advantages of the step-sample agent modes, and the experience maker that applies them.

OpenRLHF's own estimators reshape rewards to (prompts, n_samples_per_prompt); step samples come in
groups of any size, named by explicit ids:
- `3spo`: the group is the candidates at one state; step-group advantages.
- `gigpo`: over the step-wise GRPO mode's episodes, the episode advantage plus the step advantage
  within anchor-state groups (the steps taken from one state key by the task's trajectories).
- `group_norm` over step samples that carry a trajectory id (the step-wise GRPO mode): each
  trajectory's return is normalised over its task's trajectories and given to each of its steps.
`step_rewards` computes all three. Where OpenRLHF has the estimator registry (patches/), `3spo` and
`gigpo` are registered there with it (`plugin.py`); the experience maker below computes the rest itself.
"""

import numpy as np
import torch
from openrlhf.models.utils import compute_reward
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
from openrlhf.trainer.ppo_utils.length_penalty import apply_length_penalties

from openrlhf_3spo.algo import gigpo_advantages, group_advantages, trajectory_advantages
from openrlhf_3spo.openrlhf import PLUGIN_ESTIMATORS, openrlhf_has_plugin_hooks
from openrlhf_3spo.openrlhf.scores import state_scores_for

GROUP_KEY = "spo3_group"  # Experience.info key: the step's group id (an integer within the batch)
TRAJECTORY_KEY = "spo3_trajectory"  # Experience.info key: the step's trajectory id (GRPO and GiGPO modes)
STATE_KEY = "spo3_state"  # Experience.info key: the state key the step was taken from (GiGPO's anchor)
STEP_KEY = "spo3_step"  # Experience.info key: the step's index in its trajectory
ENV_REWARD_KEY = "env_reward"  # Experience.info key: the step's own env reward
PAD_KEY = "spo3_pad"  # Experience.info key: 1 for the zero-weight samples that even out the ranks' work
_ID_KEYS = (GROUP_KEY, TRAJECTORY_KEY, STATE_KEY, STEP_KEY)  # ids: their batch means would be logged as metrics


def _info(experiences, key):
    return torch.cat([e.info[key] for e in experiences]).cpu().numpy()


def gigpo_step_advantages(experiences, settings):
    """GiGPO's advantage of each step sample (`algo.gigpo_advantages`), whatever order the batch
    holds them in: each trajectory's steps are put in order by their index first."""
    rewards, groups = _info(experiences, ENV_REWARD_KEY), _info(experiences, GROUP_KEY)
    trajectories, states, steps = _info(experiences, TRAJECTORY_KEY), _info(experiences, STATE_KEY), _info(experiences, STEP_KEY)
    order = np.lexsort((steps, trajectories))
    advantages = np.empty(len(rewards))
    advantages[order] = gigpo_advantages(
        rewards[order], groups[order], trajectories[order], states[order],
        gamma=settings.gigpo_gamma, step_advantage_w=settings.gigpo_step_weight, norm=settings.gigpo_norm,
    )
    return advantages


def step_rewards(experiences, args):
    """The advantage of each step sample, one tensor per experience: 3SPO's step-group advantages,
    GiGPO's, or, for `group_norm` samples with trajectory ids, step-wise GRPO's. The registry
    signature of patches/."""
    estimator = args.algo.advantage.estimator
    rewards, groups = torch.cat([e.rewards for e in experiences]).cpu().numpy(), _info(experiences, GROUP_KEY)
    if estimator == "gigpo":
        advantages = gigpo_step_advantages(experiences, args.spo3)
    elif estimator == "3spo":
        advantages = group_advantages(rewards, groups, norm=args.spo3.adv_norm)
    else:
        advantages = trajectory_advantages(rewards, groups, _info(experiences, TRAJECTORY_KEY))
    advantages = torch.from_numpy(advantages)
    shaped = []
    for experience, advantage in zip(experiences, advantages.split([len(e.rewards) for e in experiences])):
        experience.info["spo3_advantage"] = advantage.to(experience.rewards)
        for id_key in _ID_KEYS:
            experience.info.pop(id_key, None)
        shaped.append(advantage.to(experience.rewards))
    return shaped


class SPO3ExperienceMaker(RemoteExperienceMaker):
    """OpenRLHF's experience maker, which also computes the step modes' advantages where OpenRLHF
    cannot, and then starts the state-score table's next version (the samples generator staged the
    batch's trajectories)."""

    @torch.no_grad()
    def compute_advantages_and_returns(self, experiences):
        args = self.strategy.args
        step_samples = bool(experiences) and GROUP_KEY in experiences[0].info
        # step-wise GRPO: group_norm over trajectories, not OpenRLHF's per-prompt group_norm
        step_grpo = step_samples and args.algo.advantage.estimator == "group_norm" and TRAJECTORY_KEY in experiences[0].info
        unregistered = args.algo.advantage.estimator in PLUGIN_ESTIMATORS and not openrlhf_has_plugin_hooks()
        if step_grpo or (step_samples and unregistered):
            experiences = self._step_advantages(experiences)
        else:
            experiences = super().compute_advantages_and_returns(experiences)
        scores = state_scores_for(args)
        if scores is not None:
            scores.advance()
        return experiences

    def _step_advantages(self, experiences):
        """As OpenRLHF's group estimators: the step's advantage at its last action token, the KL
        penalty per token, returns summed back over the action (gamma 1), no batch whitening."""
        args = self.strategy.args
        for experience in experiences:
            experience.rewards = experience.rewards.to(torch.promote_types(experience.rewards.dtype, torch.float32))
        apply_length_penalties(experiences, args)
        for experience, advantage in zip(experiences, step_rewards(experiences, args)):
            reward = compute_reward(
                advantage, self.kl_ctl.value, experience.kl,
                action_mask=experience.action_mask, reward_clip_range=args.reward.clip_range,
            )
            experience.returns = self.get_cumulative_returns(reward, experience.action_mask, 1.0)
            experience.advantages = experience.returns.clone()
            experience.info["return"] = reward.sum(dim=-1)
            experience.kl = None
        return experiences
