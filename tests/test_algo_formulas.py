"""Every 3SPO formula against values worked out by hand, plus properties (hypothesis)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import param_id

from openrlhf_3spo.algo import (
    adaptive_n, discounted_returns, gigpo_advantages, group_advantages, novelty_weight, state_score, step_reward,
    trajectory_advantages,
)

EPS = 1e-6


# ---- eq. 1: state score -------------------------------------------------------------------------


def test_state_score_hand_values():
    # exp(-alpha * ln(t) * SR) == t ** (-alpha * SR)
    cases = [
        # (n_total, n_success, t, alpha, expected)
        (0, 0, 100, 50.0, 1.0),  # unseen state
        (10, 0, 100, 50.0, 0.0),  # N_fail = 10 >= xi and SR = 0 <= zeta: truncated
        (9, 0, 100, 50.0, 1.0),  # N_fail = 9 < xi: SR = 0 gives exp(0)
        (20, 2, 100, 50.0, 0.0),  # N_fail = 18, SR = 2 / 20.000001 < 0.1: truncated
        (10, 1, 100, 50.0, 100.0 ** (-50 * 1 / (10 + EPS))),  # N_fail = 9: 100^-5 = 1e-10
        (4, 2, 4, 2.0, 4.0 ** (-2 * 2 / (4 + EPS))),  # 4^-1 = 0.25
        (5, 5, 1, 50.0, 1.0),  # t = 1: ln(1) = 0
    ]
    for n_total, n_success, t, alpha, expected in cases:
        got = state_score(n_total, n_success, t, alpha=alpha)
        assert got == pytest.approx(expected, rel=1e-9, abs=0), (n_total, n_success, t, alpha)
    assert state_score(10, 1, 100) == pytest.approx(1e-10, rel=1e-5)
    assert state_score(4, 2, 4, alpha=2.0) == pytest.approx(0.25, rel=1e-5)


def test_state_score_is_vectorised_and_keeps_the_xi_zeta_boundaries():
    n_total = np.array([0, 10, 11, 30, 30])
    n_success = np.array([0, 0, 1, 3, 4])
    got = state_score(n_total, n_success, t=10, xi=10, zeta=0.1)
    # (11, 1): N_fail = 10, SR = 1/11 = 0.0909 <= 0.1 -> 0; (30, 3): SR = 3/30.000001 < 0.1 -> 0
    # (30, 4): SR = 0.1333 > zeta -> 10^(-50 * 4/30.000001) = 10^-6.6667
    expected = [1.0, 0.0, 0.0, 0.0, 10 ** (-50 * 4 / (30 + EPS))]
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_state_score_stays_positive_where_exp_underflows():
    # alpha * ln(t) * SR = 50 * ln(1e9) * 1 = 1036 > 745: exp underflows, but only truncation may give 0
    assert 0 < state_score(5, 5, 1e9) < 1e-300


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_total=-1, n_success=0, t=2), "n_total"),
        (dict(n_total=1, n_success=-1, t=2), "n_success"),
        (dict(n_total=1, n_success=2, t=2), "n_success"),
        (dict(n_total=1.5, n_success=0, t=2), "n_total"),
        (dict(n_total=1, n_success=0, t=0), "t"),
        (dict(n_total=1, n_success=0, t=2, alpha=0), "alpha"),
        (dict(n_total=1, n_success=0, t=2, zeta=1.5), "zeta"),
        (dict(n_total=[1, 2], n_success=[0, 0, 0], t=2), "mismatched lengths"),
        (dict(n_total="x", n_success=0, t=2), "n_total"),
    ],
    ids=param_id,
)
def test_state_score_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        state_score(**kwargs)


# ---- eq. 2: step reward -------------------------------------------------------------------------


def test_novelty_weight_hand_values():
    assert novelty_weight(0) == 0.5
    assert novelty_weight(10, omega_k=0.1) == pytest.approx(0.5 * math.exp(-1.0))  # 0.18393972
    np.testing.assert_allclose(novelty_weight([0, 5], omega_k=0.2), [0.5, 0.5 * math.exp(-1.0)])
    with pytest.raises(ValueError, match="omega_k"):
        novelty_weight(1, omega_k=-0.1)
    with pytest.raises(ValueError, match="n_total"):
        novelty_weight(-3)


def test_step_reward_hand_values():
    # unseen s_t: w = 0.5, so the score difference has weight 0: R = 0.5 * novel + 0.5 * success
    assert step_reward(1.0, 0.25, 0, novel=1, success=0) == pytest.approx(0.5)
    # w = 0.5 * e^-1 = 0.18393972; (0.5 - w) * (0.8 - 0.2) = 0.31606028 * 0.6 = 0.18963617; + 0.5
    assert step_reward(0.8, 0.2, 10, novel=1, success=1) == pytest.approx(0.18393972 + 0.18963617 + 0.5, abs=1e-8)
    # invalid action: key unchanged, so novel = 0 and S(s_t) = S(s_t+1): R = -invalid_penalty
    assert step_reward(0.3, 0.3, 4, novel=0, success=0, invalid=1) == pytest.approx(-0.1)
    assert step_reward(0.3, 0.3, 4, novel=0, success=0, invalid=1, invalid_penalty=0.5) == pytest.approx(-0.5)
    # moving into a state with a higher score is penalised: w = 0.5 e^-0.2 = 0.40936538
    # R = 0 + (0.5 - 0.40936538) * (0.1 - 0.9) = 0.09063462 * -0.8 = -0.07250770
    assert step_reward(0.1, 0.9, 2, novel=0, success=0) == pytest.approx(-0.07250770, abs=1e-8)


def test_step_reward_is_vectorised():
    got = step_reward([1.0, 0.3], [0.25, 0.3], [0, 4], novel=[True, False], success=[False, False], invalid=[0, 1])
    np.testing.assert_allclose(got, [0.5, -0.1])


@pytest.mark.parametrize(
    "args, name",
    [
        ((1.2, 0.5, 0, 1, 0), "score_t"),
        ((0.5, -0.1, 0, 1, 0), "score_next"),
        ((0.5, 0.5, -1, 1, 0), "n_total"),
        ((0.5, 0.5, 0, 2, 0), "novel"),
        ((0.5, 0.5, 0, 1, 0.5), "success"),
        (([0.5, 0.5], [0.5, 0.5, 0.5], 0, 1, 0), "mismatched lengths"),
    ],
    ids=param_id,
)
def test_step_reward_rejects_bad_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        step_reward(*args)


# ---- eq. 3: adaptive n --------------------------------------------------------------------------


def test_adaptive_n_hand_values():
    # ceil(8 * [0, 1e-10, 0.125, 0.126, 0.5, 1]) = ceil([0, 8e-10, 1, 1.008, 4, 8])
    got = adaptive_n([0.0, 1e-10, 0.125, 0.126, 0.5, 1.0], g_max=8)
    assert got.dtype.kind == "i"
    assert got.tolist() == [0, 1, 1, 2, 4, 8]
    assert adaptive_n(0.3, g_max=4).tolist() == 2  # ceil(1.2)


@pytest.mark.parametrize("g_max", [0, -1, 2.5])
def test_adaptive_n_rejects_bad_g_max(g_max):
    with pytest.raises(ValueError, match="g_max"):
        adaptive_n(0.5, g_max=g_max)


def test_adaptive_n_rejects_scores_outside_unit_interval():
    with pytest.raises(ValueError, match="score"):
        adaptive_n([0.5, 1.5])


# ---- step-group advantages ----------------------------------------------------------------------


def test_group_advantages_hand_values():
    rewards = [1.0, 2.0, 3.0, 5.0, 4.0, 4.0]
    groups = ["a", "a", "a", "b", "c", "c"]
    # group a: mean 2, unbiased std sqrt((1 + 0 + 1) / 2) = 1; b is a singleton; c has equal rewards
    np.testing.assert_allclose(
        group_advantages(rewards, groups), [-1 / (1 + EPS), 0.0, 1 / (1 + EPS), 0.0, 0.0, 0.0]
    )
    np.testing.assert_allclose(group_advantages(rewards, groups, norm="mean"), [-1, 0, 1, 0, 0, 0])
    # interleaved integer ids: group 7 = [0.5, -0.5] -> mean 0, std sqrt(0.5) = 0.70710678
    got = group_advantages([0.5, 3.0, -0.5], [7, 1, 7])
    np.testing.assert_allclose(got, [0.5 / (0.70710678 + EPS), 0.0, -0.5 / (0.70710678 + EPS)], rtol=1e-7)


def test_score_without_the_write_off_rule_by_hand():
    # N_total 12, N_success 1: N_fail 11 >= xi 10, SR = 1/12.000001 <= 0.1 -> written off (S = 0);
    # without the rule: exp(-50 ln(100) / 12.000001) = 100^(-4.1666663) = 4.6415939e-09
    assert state_score(12, 1, 100) == 0.0
    assert state_score(12, 1, 100, write_off=False) == pytest.approx(100 ** (-50 / 12.000001), rel=1e-12)
    assert state_score(12, 0, 100, write_off=False) == 1.0  # never won: nothing lowers it
    assert state_score(0, 0, 100, write_off=False) == 1.0


def test_trajectory_advantages_by_hand():
    """Task g: trajectories 10 (return 10, 3 steps) and 11 (return 0, 1 step); task h: trajectory 12 alone.
    Over trajectories (not steps): mean 5, unbiased std sqrt(50) = 7.0710678 -> +-5 / (7.0710678 + 1e-6)."""
    returns = [10.0, 10.0, 0.0, 10.0, 3.0]
    groups = ["g", "g", "g", "g", "h"]
    trajectories = [10, 10, 11, 10, 12]
    a = 5 / (50**0.5 + EPS)
    np.testing.assert_allclose(trajectory_advantages(returns, groups, trajectories), [a, a, -a, a, 0.0], rtol=1e-12)
    # a step-level group_norm would weight trajectory 10 three times: mean 7.5, not 5
    assert group_advantages(returns[:4], groups[:4])[2] != pytest.approx(-a)
    with pytest.raises(ValueError, match="share its return"):
        trajectory_advantages([1.0, 2.0], [0, 0], [5, 5])
    with pytest.raises(ValueError, match="mismatched lengths"):
        trajectory_advantages([1.0, 2.0], [0, 0], [5])
    assert trajectory_advantages([], [], []).shape == (0,)


def test_group_advantages_rejects_bad_arguments():
    with pytest.raises(ValueError, match="norm"):
        group_advantages([1.0, 2.0], [0, 0], norm="zscore")
    with pytest.raises(ValueError, match="mismatched lengths"):
        group_advantages([1.0, 2.0], [0, 0, 1])
    with pytest.raises(ValueError, match="rewards"):
        group_advantages([1.0, float("nan")], [0, 0])
    assert group_advantages([], []).shape == (0,)


# ---- properties ---------------------------------------------------------------------------------

counts = st.integers(0, 10_000)


@given(n_total=counts, frac=st.floats(0, 1), t=st.integers(1, 10**9), alpha=st.floats(0.01, 100))
def test_scores_lie_in_unit_interval(n_total, frac, t, alpha):
    n_success = int(n_total * frac)
    score = state_score(n_total, n_success, t, alpha=alpha)
    assert 0.0 <= score <= 1.0


@given(t=st.integers(1, 10**9), alpha=st.floats(0.01, 100), xi=st.integers(0, 50), zeta=st.floats(0, 1))
def test_unseen_state_scores_one(t, alpha, xi, zeta):
    assert state_score(0, 0, t, alpha=alpha, xi=xi, zeta=zeta) == 1.0


@given(n_total=st.integers(1, 10_000), frac=st.floats(0, 1), t=st.integers(1, 10**6), xi=st.integers(0, 50))
def test_truncation_rule(n_total, frac, t, xi):
    n_success = int(n_total * frac)
    score = state_score(n_total, n_success, t, xi=xi, zeta=0.1)
    should_truncate = (n_total - n_success >= xi) and (n_success / (n_total + EPS) <= 0.1)
    assert (score == 0.0) == should_truncate


@given(score=st.lists(st.floats(0, 1), min_size=1, max_size=50), g_max=st.integers(1, 64))
def test_adaptive_n_within_bounds(score, g_max):
    n = adaptive_n(score, g_max=g_max)
    assert np.all((0 <= n) & (n <= g_max))
    assert np.all((n == 0) == (np.asarray(score) == 0))


group_batches = st.lists(st.tuples(st.integers(0, 5), st.floats(-10, 10)), min_size=1, max_size=60)


@given(batch=group_batches, norm=st.sampled_from(["mean_std", "mean"]))
def test_group_advantages_sum_to_zero_within_groups(batch, norm):
    ids = np.array([g for g, _ in batch])
    rewards = np.array([r for _, r in batch])
    adv = group_advantages(rewards, ids, norm=norm)
    for g in np.unique(ids):
        members = adv[ids == g]
        if len(members) >= 2:
            assert abs(members.sum()) < 1e-6 * max(1.0, np.abs(members).max())
        else:
            assert members[0] == 0.0


@given(rewards=st.lists(st.integers(-1000, 1000), min_size=2, max_size=30, unique=True))
def test_mean_std_advantages_of_distinct_rewards_have_unit_std(rewards):
    rewards = np.asarray(rewards) / 100.0
    adv = group_advantages(rewards, np.zeros(len(rewards), dtype=int), eps=0.0)
    assert np.std(adv, ddof=1) == pytest.approx(1.0, rel=1e-6)


def test_adaptive_n_refuses_a_g_max_that_would_overflow():
    with pytest.raises(ValueError, match="g_max must be a whole number in"):
        adaptive_n(0.5, g_max=1e30)  # ceil(5e29) as int64 was a negative n
    with pytest.raises(ValueError, match="g_max"):
        adaptive_n(0.5, g_max=float("inf"))
    assert adaptive_n(1.0, g_max=2**20) == 2**20


# GiGPO, worked by hand. Task g: trajectory A visits s0, s1, s0 (rewards 0, 0, 10: it wins at its
# third step, back at s0), trajectory B visits s0, s2 (rewards -0.1 for an invalid action, then 0).
# Task h: trajectory C, one step from a state that has g's key text s0 (reward 0). The rows interleave.
GIGPO_ROWS = dict(
    rewards=[0.0, -0.1, 0.0, 0.0, 10.0, 0.0],
    group_ids=["g", "g", "g", "g", "g", "h"],
    trajectory_ids=["A", "B", "A", "B", "A", "C"],
    state_keys=["s0", "s0", "s1", "s2", "s0", "s0"],
)


def test_discounted_returns_by_hand():
    # A: 10, 0.95 * 10 = 9.5, 0.95 * 9.5 = 9.025 (back to front); B: 0, -0.1 + 0.95 * 0; C: 0
    returns = discounted_returns(GIGPO_ROWS["rewards"], GIGPO_ROWS["trajectory_ids"], gamma=0.95)
    np.testing.assert_allclose(returns, [9.025, -0.1, 9.5, 0.0, 10.0, 0.0], rtol=1e-12)
    np.testing.assert_allclose(discounted_returns([1.0, 1.0, 1.0], [0, 0, 0], gamma=1), [3.0, 2.0, 1.0])
    np.testing.assert_allclose(discounted_returns([1.0, 1.0, 1.0], [0, 0, 0], gamma=0), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns([1.0], [0], gamma=1.5)
    with pytest.raises(ValueError, match="mismatched lengths"):
        discounted_returns([1.0, 2.0], [0])


def test_gigpo_advantages_mean_norm_by_hand():
    """Episode (eq. 3): returns A 10, B -0.1 -> mean 4.95 -> +5.05, -5.05; C alone -> 0.
    Step (eqs. 5-7): anchor (g, s0) holds A's first and third steps and B's first (a revisit counts
    once per visit): 9.025, 10, -0.1, mean 18.925 / 3 -> +2.7166667, +3.6916667, -6.4083333. (g, s1),
    (g, s2) and (h, s0) are groups of one -> 0; C's s0 is not g's s0. A = episode + 1 x step."""
    a = gigpo_advantages(**GIGPO_ROWS)
    np.testing.assert_allclose(
        a, [5.05 + 2.7166667, -5.05 - 6.4083333, 5.05, -5.05, 5.05 + 3.6916667, 0.0], atol=1e-6
    )
    # w = 0 leaves the episode term: step-wise GRPO's trajectory advantage, mean_norm
    np.testing.assert_allclose(gigpo_advantages(**GIGPO_ROWS, step_advantage_w=0.0), [5.05, -5.05, 5.05, -5.05, 5.05, 0.0], atol=1e-9)
    # gamma 1: A's steps return 10, 10, 10 and B's -0.1, 0; (g, s0): 10, -0.1, 10 -> mean 6.6333333
    np.testing.assert_allclose(gigpo_advantages(**GIGPO_ROWS, gamma=1.0)[[0, 1, 4]],
                               [5.05 + 3.3666667, -5.05 - 6.7333333, 5.05 + 3.3666667], atol=1e-6)


def test_gigpo_advantages_mean_std_norm_by_hand():
    """Two trajectories of a task: +-1/sqrt(2) (unbiased std). (g, s0): 9.025, -0.1, 10, deviations
    from 6.3083333 of +2.7166667, -6.4083333, +3.6916667, unbiased std sqrt(62.0754167 / 2) = 5.5711504."""
    a = gigpo_advantages(**GIGPO_ROWS, norm="mean_std")
    half = 2**-0.5
    std = (62.0754167 / 2) ** 0.5
    np.testing.assert_allclose(
        a, [half + 2.7166667 / std, -half - 6.4083333 / std, half, -half, half + 3.6916667 / std, 0.0], atol=1e-6
    )
    with pytest.raises(ValueError, match="norm"):
        gigpo_advantages(**GIGPO_ROWS, norm="mean_norm")
    with pytest.raises(ValueError, match="mismatched lengths"):
        gigpo_advantages([1.0], ["g"], ["A", "B"], ["s"])
    assert gigpo_advantages([], [], [], []).shape == (0,)
