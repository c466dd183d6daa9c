"""The 3SPO formulas (DESIGN.md, eqs. 1-3 and the step-group advantage), vectorised over numpy arrays.

Every function takes scalars or array-likes, broadcasts them, and raises ValueError naming the bad
argument instead of returning NaNs.
"""

import numpy as np

# exp(-alpha * ln(t) * SR) underflows to 0.0 once alpha * ln(t) * SR > ~745. Only eq. 1's
# truncation rule may give a score of 0 (it decides n = 0), so a computed score stays above this.
_MIN_POSITIVE_SCORE = np.finfo(np.float64).tiny


def _as_array(name, value, dtype=np.float64):
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric, got {value!r}") from error
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return array


def _as_counts(name, value):
    array = _as_array(name, value)
    if np.any(array < 0):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    if np.any(array != np.floor(array)):
        raise ValueError(f"{name} must hold whole numbers, got {value!r}")
    return array


def _check_positive(name, value, allow_zero=False):
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _broadcast(**arrays):
    try:
        return np.broadcast_arrays(*arrays.values())
    except ValueError as error:
        shapes = ", ".join(f"{name}{np.shape(a)}" for name, a in arrays.items())
        raise ValueError(f"mismatched lengths: {shapes}") from error


def _as_scores(name, value):
    array = _as_array(name, value)
    if np.any((array < 0) | (array > 1)):
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return array


def state_score(n_total, n_success, t, alpha=50.0, xi=10.0, zeta=0.1, eps=1e-6, write_off=True):
    """Eq. 1: S(s) = 1 if unseen; 0 if N_fail >= xi and SR <= zeta; else exp(-alpha * ln(t) * SR).

    SR = N_success / (N_total + eps); t is the global trajectory counter (recorded trajectories + 1).
    With write_off=False the truncation rule is left out: the score a written-off state would have
    without it (used where a dead end must not look like a solved state).
    """
    n_total = _as_counts("n_total", n_total)
    n_success = _as_counts("n_success", n_success)
    n_total, n_success = _broadcast(n_total=n_total, n_success=n_success)
    if np.any(n_success > n_total):
        raise ValueError("n_success must be <= n_total")
    if not np.isfinite(t) or t < 1:
        raise ValueError(f"t must be >= 1, got {t!r}")
    _check_positive("alpha", alpha)
    _check_positive("xi", xi, allow_zero=True)
    if not 0 <= zeta <= 1:
        raise ValueError(f"zeta must lie in [0, 1], got {zeta!r}")
    _check_positive("eps", eps, allow_zero=True)

    return state_score_unchecked(n_total, n_success, t, alpha, xi, zeta, eps, write_off)


def state_score_unchecked(n_total, n_success, t, alpha, xi, zeta, eps, write_off=True):
    """Eq. 1 on arrays already known to be valid (the StateTable's own counts): the hot path."""
    success_rate = n_success / (n_total + eps)
    score = np.asarray(np.maximum(np.exp(-alpha * np.log(t) * success_rate), _MIN_POSITIVE_SCORE))
    if write_off:
        score[(n_total - n_success >= xi) & (success_rate <= zeta)] = 0.0
    score[n_total == 0] = 1.0
    return score


def novelty_weight(n_total, omega_k=0.1):
    """w in eq. 2: 0.5 * exp(-omega_k * N_total(s_t)); novelty counts less in well-visited states."""
    n_total = _as_counts("n_total", n_total)
    _check_positive("omega_k", omega_k, allow_zero=True)
    return 0.5 * np.exp(-omega_k * n_total)


def step_reward(score_t, score_next, n_total_t, novel, success, omega_k=0.1, invalid=0, invalid_penalty=0.1):
    """Eq. 2: R = w * R_novel + (0.5 - w) * (S(s_t) - S(s_{t+1})) + 0.5 * R_success.

    `novel` is 1 when the state key changed, `success` 1 when this transition wins the task;
    an `invalid` (or unparsable) action adds -invalid_penalty.
    """
    score_t = _as_scores("score_t", score_t)
    score_next = _as_scores("score_next", score_next)
    novel = _as_flags("novel", novel)
    success = _as_flags("success", success)
    invalid = _as_flags("invalid", invalid)
    _check_positive("invalid_penalty", invalid_penalty, allow_zero=True)
    w = novelty_weight(n_total_t, omega_k)
    score_t, score_next, w, novel, success, invalid = _broadcast(
        score_t=score_t, score_next=score_next, n_total_t=w, novel=novel, success=success, invalid=invalid
    )
    return w * novel + (0.5 - w) * (score_t - score_next) + 0.5 * success - invalid_penalty * invalid


def _as_flags(name, value):
    array = _as_array(name, value)
    if np.any((array != 0) & (array != 1)):
        raise ValueError(f"{name} must be 0/1 or bool, got {value!r}")
    return array


MAX_G = 2**20  # n samples of one context: far beyond any engine's n, and no int64 overflow


def adaptive_n(score, g_max=8):
    """Eq. 3: n = ceil(G_max * S(s_t)) rollouts at a decision point (0 truncates, 1 continues untrained)."""
    score = _as_scores("score", score)
    if isinstance(g_max, bool) or not isinstance(g_max, (int, float, np.integer, np.floating)) or not (
        1 <= g_max <= MAX_G and int(g_max) == g_max
    ):
        raise ValueError(f"g_max must be a whole number in [1, {MAX_G}], got {g_max!r}")
    return np.ceil(g_max * score).astype(np.int64)


ADVANTAGE_NORMS = ("mean_std", "mean")


def group_advantages(rewards, group_ids, norm="mean_std", eps=1e-6):
    """Step-group advantages: A_i = (R_i - mean_g) / (std_g + eps), or R_i - mean_g with norm="mean".

    Groups are given by explicit ids and may have any size; std is the unbiased one (as
    OpenRLHF's group_norm); a group of one gets A = 0.
    """
    if norm not in ADVANTAGE_NORMS:
        raise ValueError(f"norm must be one of {ADVANTAGE_NORMS}, got {norm!r}")
    _check_positive("eps", eps, allow_zero=True)
    rewards = _as_array("rewards", rewards)
    group_ids = np.asarray(group_ids)
    if rewards.ndim != 1 or group_ids.ndim != 1 or len(rewards) != len(group_ids):
        raise ValueError(
            f"mismatched lengths: rewards{rewards.shape}, group_ids{group_ids.shape} must be 1-D and equal"
        )
    if len(rewards) == 0:
        return np.zeros(0)
    _, group = np.unique(group_ids, return_inverse=True)
    size = np.bincount(group)
    mean = np.bincount(group, weights=rewards) / size
    centred = rewards - mean[group]
    if norm == "mean_std":
        sq_dev = np.bincount(group, weights=centred**2)
        std = np.sqrt(sq_dev / np.maximum(size - 1, 1))
        centred = centred / (std[group] + eps)
    return np.where(size[group] >= 2, centred, 0.0)


def trajectory_advantages(returns, group_ids, trajectory_ids, norm="mean_std", eps=1e-6):
    """Trajectory-level GRPO over step samples (verl-agent's GRPO on multi-turn tasks): each
    trajectory's return is normalised within its group (the B trajectories of a task), and that
    advantage is given to every step of the trajectory.

    returns, group_ids, trajectory_ids: (steps,), one row per step sample; the steps of one trajectory
    carry its return. -> (steps,) advantages.
    """
    returns = _as_array("returns", returns)
    group_ids, trajectory_ids = np.asarray(group_ids), np.asarray(trajectory_ids)
    if not returns.ndim == group_ids.ndim == trajectory_ids.ndim == 1 or not len(returns) == len(group_ids) == len(trajectory_ids):
        raise ValueError(
            f"mismatched lengths: returns{returns.shape}, group_ids{group_ids.shape}, "
            f"trajectory_ids{trajectory_ids.shape} must be 1-D and equal"
        )
    if len(returns) == 0:
        return np.zeros(0)
    _, first, trajectory = np.unique(trajectory_ids, return_index=True, return_inverse=True)
    if np.any(returns != returns[first][trajectory]) or np.any(group_ids != group_ids[first][trajectory]):
        raise ValueError("the steps of one trajectory must share its return and group id")
    per_trajectory = group_advantages(returns[first], group_ids[first], norm, eps)
    return per_trajectory[trajectory]


def _step_rows(name, values, *ids):
    """values and ids as 1-D arrays of one length (one row per step sample), or a ValueError."""
    values = _as_array(name, values)
    ids = [np.asarray(i) for i in ids]
    if values.ndim != 1 or any(i.ndim != 1 or len(i) != len(values) for i in ids):
        raise ValueError(f"mismatched lengths: {name}{values.shape} and the ids {[i.shape for i in ids]} must be 1-D and equal")
    return values, ids


def discounted_returns(rewards, trajectory_ids, gamma=0.95):
    """GiGPO eq. 5: R_t = sum_{k >= t} gamma^(k - t) r_k, over the rest of each step's trajectory.

    rewards, trajectory_ids: (steps,), the steps of each trajectory in the order taken (trajectories
    may interleave). -> (steps,)
    """
    rewards, (trajectory_ids,) = _step_rows("rewards", rewards, trajectory_ids)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)) or not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    returns = np.zeros(len(rewards))
    following = {}  # trajectory id -> the return after the step being filled in
    for i in range(len(rewards) - 1, -1, -1):
        returns[i] = rewards[i] + gamma * following.get(trajectory_ids[i], 0.0)
        following[trajectory_ids[i]] = returns[i]
    return returns


def gigpo_advantages(rewards, group_ids, trajectory_ids, state_keys, gamma=0.95, step_advantage_w=1.0, norm="mean", eps=1e-6):
    """GiGPO (eq. 8): A = A_episode + w * A_step, over the step samples of a batch of tasks.

    A_episode (eq. 3): each trajectory's return (the sum of its rewards) normalised over its task's
    trajectories, given to each of its steps. A_step (eqs. 5-7): each step's discounted return,
    normalised within its anchor-state group: the steps taken from the same state key by any of the
    task's trajectories (a state revisited within one trajectory adds one member per visit).
    `norm`: "mean" (GiGPO's mean_norm, the default) or "mean_std" (mean_std_norm), for both terms.
    Groups of one get 0, for either term.

    rewards, group_ids, trajectory_ids, state_keys: (steps,), each trajectory's steps in order. -> (steps,)
    """
    rewards, (group_ids, trajectory_ids, state_keys) = _step_rows("rewards", rewards, group_ids, trajectory_ids, state_keys)
    if len(rewards) == 0:
        return np.zeros(0)
    _, trajectory = np.unique(trajectory_ids, return_inverse=True)
    episode_return = np.bincount(trajectory, weights=rewards)[trajectory]
    episode = trajectory_advantages(episode_return, group_ids, trajectory_ids, norm, eps)
    anchors = np.array([f"{g}\x00{k}" for g, k in zip(group_ids, state_keys)])  # anchor states are per task
    step = group_advantages(discounted_returns(rewards, trajectory_ids, gamma), anchors, norm, eps)
    return episode + step_advantage_w * step
