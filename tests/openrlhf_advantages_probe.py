"""Advantages and returns of every built-in estimator, and of the step modes, on one fixed batch;
saved with torch.save to argv[1]. `test_openrlhf_patches.py` runs it under OpenRLHF as released and
under the patched copy, and compares the two files bit for bit."""

import sys
from types import SimpleNamespace

import torch
from openrlhf.trainer.ppo_utils.experience import Experience
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController

from openrlhf_3spo.plugin import compat
from openrlhf_3spo.plugin.advantages import GROUP_KEY, TRAJECTORY_KEY

BUILT_IN = ("gae", "reinforce", "rloo", "reinforce_baseline", "group_norm", "dr_grpo", "flash_reinforce")
PROMPTS, SAMPLES, LENGTH, MICRO = 3, 4, 5, 3


def _args(estimator):
    return SimpleNamespace(
        algo=SimpleNamespace(advantage=SimpleNamespace(estimator=estimator, gamma=0.9, lambd=0.95, no_std_norm=False)),
        rollout=SimpleNamespace(n_samples_per_prompt=SAMPLES, max_new_tokens=LENGTH),
        reward=SimpleNamespace(clip_range=(-10.0, 10.0), overlong_buffer_len=None, stop_properly_penalty_coef=None),
        data=SimpleNamespace(max_len=16),
        spo3=SimpleNamespace(adv_norm="mean_std", state_actor="probe", score_shards=1),
    )


def _batch(step_ids=None, reward_of=None):
    """Micro-batches in a shuffled order (as the ranks return them), with random rewards, KL,
    values and action masks of different lengths."""
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(PROMPTS * SAMPLES, generator=generator).tolist()
    experiences = []
    for start in range(0, len(order), MICRO):
        index = order[start : start + MICRO]
        lengths = torch.randint(1, LENGTH + 1, (len(index),), generator=generator)
        info = {}
        if step_ids:
            for key, ids in step_ids.items():
                info[key] = torch.tensor([ids[i] for i in index])
        experiences.append(Experience(
            rewards=torch.tensor([reward_of[i] for i in index]) if reward_of else torch.rand(len(index), generator=generator),
            kl=torch.randn(len(index), LENGTH, generator=generator) * 0.1,
            values=torch.randn(len(index), LENGTH, generator=generator),
            action_mask=torch.arange(LENGTH)[None, :] < lengths[:, None],
            index=index,
            info=info,
        ))
    return experiences


def _run(estimator, experiences):
    args = _args(estimator)
    maker = RemoteExperienceMaker(None, None, None, None, FixedKLController(0.05), SimpleNamespace(args=args), None)
    experiences = maker.compute_advantages_and_returns(experiences)
    return [(e.advantages, e.returns, {k: v for k, v in sorted(e.info.items())}) for e in experiences]


def main(out):
    compat.load_plugin()  # the plugin's estimators, as a run registers them: OpenRLHF's registry or the seam's
    results = {estimator: _run(estimator, _batch()) for estimator in BUILT_IN}
    groups = {i: i // 2 for i in range(PROMPTS * SAMPLES)}  # step groups of 2
    results["3spo"] = _run("3spo", _batch({GROUP_KEY: groups}))
    # step-wise GRPO: tasks of 2 trajectories of 2 steps; a trajectory's steps share its return
    trajectories = {GROUP_KEY: {i: i // 4 for i in groups}, TRAJECTORY_KEY: {i: i // 2 for i in groups}}
    returns = {i: [0.0, 1.0, 0.5, 0.25, 1.0, 1.0][i // 2] for i in groups}
    results["step_grpo"] = _run("step_grpo", _batch(trajectories, returns))
    torch.save(results, out)


if __name__ == "__main__":
    main(sys.argv[1])
