"""RemoteExperienceMaker with the advantages of the step-sample agent modes.

OpenRLHF's own estimators reshape rewards to (prompts, n_samples_per_prompt); step samples come in
groups of any size, named by explicit ids:
- `3spo`: the group is the candidates at one state; step-group advantages.
- `group_norm` over step samples that carry a trajectory id (the step-wise GRPO mode): each
  trajectory's return is normalised over its task's trajectories and given to each of its steps.
Every other case is the parent's code, untouched.
"""

import torch
from openrlhf.models.utils import compute_reward
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
from openrlhf.trainer.ppo_utils.length_penalty import apply_length_penalties

from openrlhf_3spo.algo import group_advantages, trajectory_advantages

GROUP_KEY = "spo3_group"  # Experience.info key: the step's group id (an integer within the batch)
TRAJECTORY_KEY = "spo3_trajectory"  # Experience.info key: the step's trajectory id (GRPO mode)
PAD_KEY = "spo3_pad"  # Experience.info key: 1 for the zero-weight samples that even out the ranks' work


class SPO3ExperienceMaker(RemoteExperienceMaker):
    """Once a batch's advantages are computed, the state-score table starts its next version (the
    samples generator staged the batch's trajectories)."""

    # args -> the run's StateScores, or None; `register` passes the connection in
    connect_scores = staticmethod(lambda args: None)

    @property
    def state_scores(self):
        return self.connect_scores(self.strategy.args)

    @torch.no_grad()
    def compute_advantages_and_returns(self, experiences):
        args = self.strategy.args
        estimator = args.algo.advantage.estimator
        step_grpo = estimator == "group_norm" and bool(experiences) and TRAJECTORY_KEY in experiences[0].info
        if estimator != "3spo" and not step_grpo:
            return super().compute_advantages_and_returns(experiences)

        for experience in experiences:
            experience.rewards = experience.rewards.to(torch.promote_types(experience.rewards.dtype, torch.float32))
        apply_length_penalties(experiences, args)

        rewards = torch.cat([e.rewards for e in experiences]).cpu().numpy()
        groups = torch.cat([e.info[GROUP_KEY] for e in experiences]).cpu().numpy()
        if step_grpo:
            trajectories = torch.cat([e.info[TRAJECTORY_KEY] for e in experiences]).cpu().numpy()
            advantages = torch.from_numpy(trajectory_advantages(rewards, groups, trajectories))
        else:
            advantages = torch.from_numpy(group_advantages(rewards, groups, norm=args.spo3.adv_norm))
        for experience, advantage in zip(experiences, advantages.split([len(e.rewards) for e in experiences])):
            # as OpenRLHF's group estimators: the step's advantage at its last action token, the KL
            # penalty per token, returns summed back over the action (gamma 1), no batch whitening
            reward = compute_reward(
                advantage.to(experience.rewards), self.kl_ctl.value, experience.kl,
                action_mask=experience.action_mask, reward_clip_range=args.reward.clip_range,
            )
            experience.returns = self.get_cumulative_returns(reward, experience.action_mask, 1.0)
            experience.advantages = experience.returns.clone()
            experience.info["return"] = reward.sum(dim=-1)
            experience.info["spo3_advantage"] = advantage.to(experience.rewards)
            experience.kl = None
            for id_key in (GROUP_KEY, TRAJECTORY_KEY):  # ids: their batch means would be logged as metrics
                experience.info.pop(id_key, None)
        scores = self.state_scores
        if scores is not None:
            scores.advance()
        return experiences
