"""The step modes' registered estimators through OpenRLHF's experience maker: 3SPO step-group
advantages token by token, and OpenRLHF's own estimators untouched."""

import copy
from types import SimpleNamespace

import pytest
import torch
from openrlhf.trainer.ppo_utils.experience import Experience
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker

from openrlhf_3spo.agents import agent_file
from openrlhf_3spo.plugin import compat
from openrlhf_3spo.plugin.advantages import ENV_REWARD_KEY, GROUP_KEY, STATE_KEY, STEP_KEY, TRAJECTORY_KEY

EPS = 1e-6


@pytest.fixture(autouse=True, scope="module")
def plugin_loaded():
    """The plugin, as a run loads it (this environment: OpenRLHF as released, through `compat`)."""
    compat.load_plugin()


@pytest.fixture
def local_table(monkeypatch):
    """The run's state-score table, in process instead of on Ray."""
    import openrlhf_3spo.plugin.scores as scores
    from openrlhf_3spo.state.local import LocalStateScores

    table = LocalStateScores()
    monkeypatch.setattr(scores, "_connect", lambda name, shards: table)  # the run's table under 3SPO
    return table


def _args(estimator, n_samples=2, adv_norm="mean_std"):
    return SimpleNamespace(
        algo=SimpleNamespace(advantage=SimpleNamespace(estimator=estimator, gamma=1.0, lambd=1.0, no_std_norm=False)),
        rollout=SimpleNamespace(n_samples_per_prompt=n_samples, max_new_tokens=8),
        reward=SimpleNamespace(clip_range=(-10.0, 10.0), overlong_buffer_len=None, stop_properly_penalty_coef=None),
        data=SimpleNamespace(max_len=64),
        train=SimpleNamespace(agent_func_path=None),
        spo3=SimpleNamespace(adv_norm=adv_norm, state_actor="unit-test", score_shards=1,
                             gigpo_gamma=0.95, gigpo_step_weight=1.0, gigpo_norm="mean"),
    )


def _maker(args, kl_coef=0.1):
    maker = RemoteExperienceMaker.__new__(RemoteExperienceMaker)  # the advantage step needs no model groups
    maker.strategy = SimpleNamespace(args=args)
    maker.args, maker.advantage_estimator = args, args.algo.advantage.estimator
    maker.kl_ctl = SimpleNamespace(value=kl_coef)
    return maker


def _experience(rewards, groups, action_mask, kl, index):
    return Experience(
        rewards=torch.tensor(rewards),
        action_mask=torch.tensor(action_mask, dtype=torch.bool),
        kl=torch.tensor(kl),
        index=index,
        info={GROUP_KEY: torch.tensor(groups)},
    )


def test_3spo_advantages_by_hand_token_by_token():
    # two experiences: A holds steps a0 (group 0) and a1 (group 1, alone); B holds b0 (group 0)
    a = _experience([1.0, 0.3], [0, 1], [[1, 1, 1, 0], [1, 1, 0, 0]], [[0.2, 0.0, 0.1, 0.0], [0.5, 0.5, 0.0, 0.0]], [0, 1])
    b = _experience([0.0], [0], [[1, 1, 0, 0]], [[0.0, 0.3, 0.0, 0.0]], [2])
    _maker(_args("3spo")).compute_advantages_and_returns([a, b])
    # group 0 = {1.0, 0.0}: mean 0.5, unbiased std sqrt(0.25 + 0.25) = 0.70710678 -> +-0.5 / (0.70710678 + 1e-6)
    adv = 0.5 / (0.5**0.5 + EPS)  # 0.70710578
    # a0: reward at its last action token (2), -0.1 * kl per token: [-0.02, 0, adv - 0.01, 0]; summed back
    expected_a0 = [adv - 0.03, adv - 0.01, adv - 0.01, 0.0]
    # a1: alone in group 1 -> 0; only the KL terms: [-0.05, -0.05, 0, 0] summed back
    expected_a1 = [-0.10, -0.05, 0.0, 0.0]
    # b0: -adv at token 1, kl -0.03 at token 1
    expected_b0 = [-adv - 0.03, -adv - 0.03, 0.0, 0.0]
    torch.testing.assert_close(a.advantages, torch.tensor([expected_a0, expected_a1]), atol=1e-6, rtol=0)
    torch.testing.assert_close(b.advantages, torch.tensor([expected_b0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(a.returns, a.advantages)
    torch.testing.assert_close(a.info["spo3_advantage"], torch.tensor([adv, 0.0]), atol=1e-6, rtol=0)
    assert a.kl is None and b.kl is None


def test_3spo_mean_norm_and_no_batch_whitening():
    a = _experience([2.0, 1.0, 4.0], [5, 5, 9], [[1, 0], [1, 0], [1, 0]], [[0.0, 0.0]] * 3, [0, 1, 2])
    b = _experience([0.0], [9], [[1, 0]], [[0.0, 0.0]], [3])
    _maker(_args("3spo", adv_norm="mean"), kl_coef=0.0).compute_advantages_and_returns([a, b])
    # group 5: mean 1.5 -> [0.5, -0.5]; group 9: mean 2 -> [2, -2]; left as they are (no whitening)
    assert a.advantages[:, 0].tolist() == [0.5, -0.5, 2.0] and b.advantages[:, 0].tolist() == [-2.0]


def test_step_grpo_gives_each_step_its_trajectorys_group_norm_advantage():
    # task 0: trajectory 7 won (return 10, two steps), trajectory 8 lost (return 0, one step)
    a = _experience([10.0, 10.0], [0, 0], [[1, 0], [1, 0]], [[0.0, 0.0]] * 2, [0, 1])
    b = _experience([0.0], [0], [[1, 0]], [[0.0, 0.0]], [2])
    a.info[TRAJECTORY_KEY], b.info[TRAJECTORY_KEY] = torch.tensor([7, 7]), torch.tensor([8])
    _maker(_args("step_grpo", n_samples=2), kl_coef=0.0).compute_advantages_and_returns([a, b])
    adv = 5 / (50**0.5 + EPS)  # over the two trajectories: mean 5, std sqrt(50)
    torch.testing.assert_close(a.advantages[:, 0], torch.tensor([adv, adv]), atol=1e-6, rtol=0)
    torch.testing.assert_close(b.advantages[:, 0], torch.tensor([-adv]), atol=1e-6, rtol=0)


def _gigpo_step(env_reward, group, trajectory, state, step):
    experience = _experience([0.0], [group], [[1, 0]], [[0.0, 0.0]], [step])
    experience.info.update({ENV_REWARD_KEY: torch.tensor([env_reward]), TRAJECTORY_KEY: torch.tensor([trajectory]),
                            STATE_KEY: torch.tensor([state]), STEP_KEY: torch.tensor([step])})
    return experience


def test_gigpo_advantages_by_hand_in_any_batch_order():
    """Task 0, B = 2. Trajectory 7 takes s10 -> s11 -> s10 and wins at its third step (env rewards
    0, 0, 1); trajectory 8 takes s10, s12 and loses (0, 0). Episode: returns 1 and 0, mean 0.5 ->
    +0.5 and -0.5 (mean_norm). Step returns (gamma 0.95): trajectory 7: 0.9025, 0.95, 1; 8: 0, 0.
    Anchor s10 holds 7's first and third steps and 8's first: 0.9025, 1, 0, mean 0.6341667 ->
    +0.2683333, +0.3658333, -0.6341667; s11 and s12 are groups of one -> 0."""
    steps = [_gigpo_step(0.0, 0, 7, 10, 0), _gigpo_step(0.0, 0, 7, 11, 1), _gigpo_step(1.0, 0, 7, 10, 2),
             _gigpo_step(0.0, 0, 8, 10, 0), _gigpo_step(0.0, 0, 8, 12, 1)]
    expected = [0.5 + 0.2683333, 0.5, 0.5 + 0.3658333, -0.5 - 0.6341667, -0.5]
    order = [4, 2, 0, 3, 1]  # the batch need not hold a trajectory's steps in order
    batch = [steps[i] for i in order]
    _maker(_args("gigpo"), kl_coef=0.0).compute_advantages_and_returns(batch)
    got = torch.cat([e.advantages[:, 0] for e in batch])
    torch.testing.assert_close(got, torch.tensor([expected[i] for i in order]), atol=1e-6, rtol=0)
    assert all(STATE_KEY not in e.info and STEP_KEY not in e.info for e in batch)  # ids are not logged as metrics


@pytest.mark.parametrize("estimator", ["group_norm", "reinforce_baseline", "rloo", "reinforce"])
def test_other_estimators_are_bit_identical_to_openrlhf(estimator):
    torch.manual_seed(0)
    batch = [
        _experience(torch.randn(2).tolist(), [0, 0], [[1, 1, 1, 0], [1, 1, 0, 0]], torch.rand(2, 4).tolist(), [0, 1]),
        _experience(torch.randn(2).tolist(), [1, 1], [[1, 0, 0, 0], [1, 1, 1, 1]], torch.rand(2, 4).tolist(), [3, 2]),
    ]
    ours, theirs = copy.deepcopy(batch), copy.deepcopy(batch)
    _maker(_args(estimator)).compute_advantages_and_returns(ours)  # with the seam's estimator lookup
    released = RemoteExperienceMaker.compute_advantages_and_returns.__wrapped__  # OpenRLHF's own
    released(_maker(_args(estimator)), theirs)
    for mine, reference in zip(ours, theirs):
        assert torch.equal(mine.advantages, reference.advantages) and torch.equal(mine.returns, reference.returns)


def test_3spo_metrics_reach_openrlhfs_status_dict(local_table):
    from openrlhf_3spo.plugin.callbacks import SPO3Callback

    local_table.record([["k1", "k2"], ["k2"]], [True, False])
    local_table.advance()
    trainer = SimpleNamespace(args=_args("3spo"))
    trainer.args.train.agent_func_path = agent_file("alfworld", "3spo")
    trainer.samples_generator = SimpleNamespace(pop_stats=lambda: {"spo3/trained_step_fraction": 0.75})
    status = {"policy_loss": 0.5}
    SPO3Callback(trainer).on_train_step_end(status, 5)
    assert status["policy_loss"] == 0.5 and status["spo3/trained_step_fraction"] == 0.75
    assert status["spo3/unique_states"] == 2 and status["spo3/t"] == 3 and status["spo3/version"] == 1
    assert status["spo3/lost_records"] == 0
    trainer.args = _args("group_norm")
    status = {"policy_loss": 0.5}
    SPO3Callback(trainer).on_train_step_end(status, 5)
    assert status == {"policy_loss": 0.5}


def test_the_samples_generator_advances_the_table_once_its_batch_is_generated(local_table):
    from openrlhf_3spo.plugin.samples_generator import StepSamplesGenerator

    generator = StepSamplesGenerator.__new__(StepSamplesGenerator)  # no vLLM engines needed
    generator.args = _args("3spo")
    generator.args.train = SimpleNamespace(agent_func_path=agent_file("alfworld", "3spo"), dynamic_batch_enable=True)
    generator.args.rollout.batch_size = 2
    generator.args.vllm = SimpleNamespace(enable_sleep=False)
    generator.prompts_dataloader, generator.state_scores, generator.spo3_stats = [], local_table, {}

    def generate(iterator, batch_size, dynamic_filtering, **kwargs):  # stands for the batch's rollouts
        local_table.record([["k1"]], [True])
        assert local_table.current_version() == 0  # staged, not yet counted
        return [], 2, True

    generator._generate_vllm = generate
    generator.generate_samples()
    assert local_table.current_version() == 1 and local_table.stats()["staged_trajectories"] == 0
