"""RemoteExperienceMaker with step-group advantages for `--advantage_estimator 3spo`.

OpenRLHF's own estimators reshape rewards to (prompts, n_samples_per_prompt); 3SPO's groups are the
candidates at one state, of any size, named by explicit group ids. Every other estimator is the
parent's code, untouched.
"""

import torch
from openrlhf.models.utils import compute_reward
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
from openrlhf.trainer.ppo_utils.length_penalty import apply_length_penalties

from openrlhf_3spo.algo import group_advantages

GROUP_KEY = "spo3_group"  # Experience.info key: the step's group id (an integer within the batch)


class SPO3ExperienceMaker(RemoteExperienceMaker):
    """Once a batch's advantages are computed, the state-score table starts its next version (the
    samples generator staged the batch's trajectories)."""

    @property
    def state_scores(self):
        from openrlhf_3spo.openrlhf.register import state_scores_for

        return state_scores_for(self.strategy.args)

    @torch.no_grad()
    def compute_advantages_and_returns(self, experiences):
        args = self.strategy.args
        if args.algo.advantage.estimator != "3spo":
            return super().compute_advantages_and_returns(experiences)

        for experience in experiences:
            experience.rewards = experience.rewards.to(torch.promote_types(experience.rewards.dtype, torch.float32))
        apply_length_penalties(experiences, args)

        rewards = torch.cat([e.rewards for e in experiences]).cpu().numpy()
        groups = torch.cat([e.info[GROUP_KEY] for e in experiences]).cpu().numpy()
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
        scores = self.state_scores
        if scores is not None:
            scores.advance()
        return experiences
