"""The step modes' advantage estimators, in the registry's signature: `shape(experiences, args)` ->
one tensor per experience. OpenRLHF then spreads each over its tokens as for its group estimators.

OpenRLHF's own estimators reshape rewards to (prompts, n_samples_per_prompt); step samples come in
groups of any size, named by the ids the samples generator put in `Experience.info`:
- `3spo`: the group is the candidates at one state; step-group advantages.
- `step_grpo`: each trajectory's return, normalised over its task's trajectories, given to each of
  its steps.
- `gigpo`: over the step-wise GRPO mode's episodes, the episode advantage plus the step advantage
  within anchor-state groups (the steps taken from one state key by the task's trajectories).
"""

import numpy as np
import torch

from openrlhf_3spo.algo import gigpo_advantages, group_advantages, trajectory_advantages

GROUP_KEY = "spo3_group"  # Experience.info key: the step's group id (an integer within the batch)
TRAJECTORY_KEY = "spo3_trajectory"  # Experience.info key: the step's trajectory id (GRPO and GiGPO modes)
STATE_KEY = "spo3_state"  # Experience.info key: the state key the step was taken from (GiGPO's anchor)
STEP_KEY = "spo3_step"  # Experience.info key: the step's index in its trajectory
ENV_REWARD_KEY = "env_reward"  # Experience.info key: the step's own env reward
PAD_KEY = "spo3_pad"  # Experience.info key: 1 for the zero-weight samples that even out the ranks' work
_ID_KEYS = (GROUP_KEY, TRAJECTORY_KEY, STATE_KEY, STEP_KEY)  # ids: their batch means would be logged as metrics


def _info(experiences, key):
    return torch.cat([e.info[key] for e in experiences]).cpu().numpy()


def _rewards(experiences):
    return torch.cat([e.rewards for e in experiences]).cpu().numpy()


def _per_experience(experiences, advantages):
    """[total step samples] -> one tensor per experience; logs each as `spo3_advantage` and drops
    the id keys."""
    shaped = []
    split = torch.from_numpy(advantages).split([len(e.rewards) for e in experiences])
    for experience, advantage in zip(experiences, split):
        experience.info["spo3_advantage"] = advantage.to(experience.rewards)
        for id_key in _ID_KEYS:
            experience.info.pop(id_key, None)
        shaped.append(advantage.to(experience.rewards))
    return shaped


def shape_3spo(experiences, args):
    """3SPO's step-group advantages (`algo.group_advantages`) of each step sample's step reward."""
    advantages = group_advantages(_rewards(experiences), _info(experiences, GROUP_KEY), norm=args.spo3.adv_norm)
    return _per_experience(experiences, advantages)


def shape_step_grpo(experiences, args):
    """Step-wise GRPO: each step gets its trajectory's group-normalised return."""
    advantages = trajectory_advantages(
        _rewards(experiences), _info(experiences, GROUP_KEY), _info(experiences, TRAJECTORY_KEY)
    )
    return _per_experience(experiences, advantages)


def shape_gigpo(experiences, args):
    """GiGPO's advantage of each step sample (`algo.gigpo_advantages`), whatever order the batch
    holds them in: each trajectory's steps are put in order by their index first."""
    rewards, groups = _info(experiences, ENV_REWARD_KEY), _info(experiences, GROUP_KEY)
    trajectories, states, steps = _info(experiences, TRAJECTORY_KEY), _info(experiences, STATE_KEY), _info(experiences, STEP_KEY)
    order = np.lexsort((steps, trajectories))
    advantages = np.empty(len(rewards))
    advantages[order] = gigpo_advantages(
        rewards[order], groups[order], trajectories[order], states[order],
        gamma=args.spo3.gigpo_gamma, step_advantage_w=args.spo3.gigpo_step_weight, norm=args.spo3.gigpo_norm,
    )
    return _per_experience(experiences, advantages)
