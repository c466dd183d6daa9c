"""The advantages of the step-sample agent modes, and the experience maker that applies them.

OpenRLHF's own estimators reshape rewards to (prompts, n_samples_per_prompt); step samples come in
groups of any size, named by explicit ids:
- `3spo`: the group is the candidates at one state; step-group advantages.
- `group_norm` over step samples that carry a trajectory id (the step-wise GRPO mode): each
  trajectory's return is normalised over its task's trajectories and given to each of its steps.
`step_rewards` computes both. Where OpenRLHF has the estimator registry (patches/), `3spo` is
registered there with it (`plugin.py`); the experience maker below computes the rest itself.
"""

import torch
from openrlhf.models.utils import compute_reward
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
from openrlhf.trainer.ppo_utils.length_penalty import apply_length_penalties

from openrlhf_3spo.algo import group_advantages, trajectory_advantages
from openrlhf_3spo.openrlhf import openrlhf_has_plugin_hooks
from openrlhf_3spo.openrlhf.scores import state_scores_for

GROUP_KEY = "spo3_group"  # Experience.info key: the step's group id (an integer within the batch)
TRAJECTORY_KEY = "spo3_trajectory"  # Experience.info key: the step's trajectory id (GRPO mode)
PAD_KEY = "spo3_pad"  # Experience.info key: 1 for the zero-weight samples that even out the ranks' work


def step_rewards(experiences, args):
    """The advantage of each step sample, one tensor per experience: 3SPO's step-group advantages,
    or, for samples with trajectory ids, step-wise GRPO's. The registry signature of patches/."""
    rewards = torch.cat([e.rewards for e in experiences]).cpu().numpy()
    groups = torch.cat([e.info[GROUP_KEY] for e in experiences]).cpu().numpy()
    if TRAJECTORY_KEY in experiences[0].info:
        trajectories = torch.cat([e.info[TRAJECTORY_KEY] for e in experiences]).cpu().numpy()
        advantages = torch.from_numpy(trajectory_advantages(rewards, groups, trajectories))
    else:
        advantages = torch.from_numpy(group_advantages(rewards, groups, norm=args.spo3.adv_norm))
    shaped = []
    for experience, advantage in zip(experiences, advantages.split([len(e.rewards) for e in experiences])):
        experience.info["spo3_advantage"] = advantage.to(experience.rewards)
        for id_key in (GROUP_KEY, TRAJECTORY_KEY):  # ids: their batch means would be logged as metrics
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
        step_grpo = step_samples and TRAJECTORY_KEY in experiences[0].info  # not OpenRLHF's per-prompt group_norm
        spo3_unregistered = args.algo.advantage.estimator == "3spo" and not openrlhf_has_plugin_hooks()
        if step_grpo or (step_samples and spo3_unregistered):
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
