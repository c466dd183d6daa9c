"""StateTable: hand-worked traces of record/scores, state_dict round trips, bad input."""

import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openrlhf_3spo.algo import StateTable, state_score

EPS = 1e-6


def _digest(text):
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def test_record_counts_distinct_keys_per_trajectory_and_advances_t():
    table = StateTable(alpha=1.0)
    assert table.t == 1 and len(table) == 0
    # trajectory 1 visits a, b, a (a counted once) and wins; trajectory 2 visits b, c and fails
    table.record([["a", "b", "a"], ["b", "c"]], [True, False])
    assert table.t == 3 and len(table) == 3
    assert table.n_total(["a", "b", "c", "zz"]).tolist() == [1, 2, 1, 0]
    assert table.n_success(["a", "b", "c", "zz"]).tolist() == [1, 1, 0, 0]
    # alpha = 1, t = 3: a: 3^-(1/1.000001) = 0.33333; b: 3^-(1/2.000001) = 0.57735; c: SR 0 -> 1; unseen -> 1
    expected = [3 ** -(1 / (1 + EPS)), 3 ** -(1 / (2 + EPS)), 1.0, 1.0]
    np.testing.assert_allclose(table.scores(["a", "b", "c", "zz"]), expected, rtol=1e-12)
    assert table.scores(["a"])[0] == pytest.approx(1 / 3, rel=1e-5)


def test_failed_state_is_truncated_after_xi_failures():
    table = StateTable(xi=3)
    table.record([["s0", "dead"]] * 2, [False, False])
    assert table.scores(["dead"]).tolist() == [1.0]  # N_fail = 2 < xi
    table.record([["s0", "dead"]], [False])
    assert table.scores(["dead"]).tolist() == [0.0]  # N_fail = 3, SR = 0
    assert table.t == 4


def test_scores_match_the_formula_on_a_random_history():
    rng = np.random.default_rng(0)
    keys = [f"k{i}" for i in range(40)]
    table = StateTable()
    total, success = dict.fromkeys(keys, 0), dict.fromkeys(keys, 0)
    for _ in range(30):
        trajectory = list(rng.choice(keys, size=8))
        won = bool(rng.random() < 0.3)
        table.record([trajectory], [won])
        for k in set(trajectory):
            total[k] += 1
            success[k] += won
    expected = state_score([total[k] for k in keys], [success[k] for k in keys], 31)
    np.testing.assert_array_equal(table.scores(keys), expected)
    seen = [k for k in keys if total[k]]
    assert sorted(table.all_scores().tolist()) == sorted(table.scores(seen).tolist())


def test_table_grows_past_initial_capacity():
    table = StateTable()
    table.record([[f"s{i}" for i in range(5000)]], [True])
    assert len(table) == 5000
    assert table.n_total(["s0", "s4999"]).tolist() == [1, 1]


def test_state_dict_round_trip():
    table = StateTable(alpha=2.0)
    table.record([["a", "b"], ["b"], ["c"]], [True, False, True])
    state = table.state_dict()
    restored = StateTable(alpha=2.0)
    restored.load_state_dict(state)
    keys = ["a", "b", "c", "new"]
    assert restored.t == table.t == 4
    np.testing.assert_array_equal(restored.scores(keys), table.scores(keys))
    np.testing.assert_array_equal(restored.n_total(keys), table.n_total(keys))
    # mutating the restored table leaves the state dict (and the original) untouched
    restored.record([["a"]], [False])
    assert table.n_total(["a"]).tolist() == [1]
    # keys come back as their 128-bit digests, in digest order (independent of hash seeds)
    by_key = dict(zip(state["keys"], state["n_total"].tolist()))
    assert by_key == {_digest("a"): 1, _digest("b"): 2, _digest("c"): 1}
    assert state["keys"] == sorted(by_key, key=lambda k: int(k[:16], 16))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("t"), "lacks"),
        (lambda s: s.update(version=99), "version"),
        (lambda s: s.update(keys=["a"]), "mismatched lengths"),
        (lambda s: s.update(keys=["a", "a", "b"]), "duplicate"),
        (lambda s: s.update(keys=["a", _digest("a"), "b"]), "duplicate"),  # a key and its own digest
        (lambda s: s.update(n_success=np.array([5, 0, 0])), "n_success"),
        (lambda s: s.update(t=0), "t must be"),
    ],
)
def test_load_state_dict_rejects_bad_state(change, message):
    table = StateTable()
    table.record([["a", "b"], ["c"]], [True, False])
    state = table.state_dict()
    change(state)
    with pytest.raises(ValueError, match=message):
        StateTable().load_state_dict(state)


def test_bad_arguments_name_the_cause():
    table = StateTable()
    with pytest.raises(ValueError, match="mismatched lengths"):
        table.record([["a"], ["b"]], [True])
    with pytest.raises(ValueError, match="lists of str"):
        table.record([[1, 2]], [True])
    with pytest.raises(ValueError, match="lists of str"):
        table.record(["ab"], [True])
    with pytest.raises(ValueError, match="single str"):
        table.scores("abc")
    with pytest.raises(ValueError, match="alpha"):
        StateTable(alpha=-1)


@given(
    trajectories=st.lists(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=6), min_size=1, max_size=10),
    won=st.data(),
)
def test_counts_stay_consistent(trajectories, won):
    wins = won.draw(st.lists(st.booleans(), min_size=len(trajectories), max_size=len(trajectories)))
    table = StateTable()
    table.record(trajectories, wins)
    keys = list("abcdefg")
    n_total, n_success = table.n_total(keys), table.n_success(keys)
    assert np.all(n_success <= n_total)
    assert n_total.tolist() == [sum(k in t for t in trajectories) for k in keys]
    assert table.t == len(trajectories) + 1
    assert np.all((0 <= table.scores(keys)) & (table.scores(keys) <= 1))


def test_hex_digest_keys_are_their_own_digest_and_text_keys_are_hashed():
    table = StateTable()
    hex_key = "0f" * 15 + "00"  # trailing zero byte kept
    table.record([[hex_key, "You see a fridge 1.", "ünïcode 🙂"]], [True])
    assert sorted(table.state_dict()["keys"]) == sorted([hex_key, _digest("You see a fridge 1."), _digest("ünïcode 🙂")])
    assert table.n_total([hex_key, "You see a fridge 1.", _digest("ünïcode 🙂"), "nope"]).tolist() == [1, 1, 1, 0]
    # 32 characters that are not hex are text, not a digest
    assert table.n_total(["zz" * 16]).tolist() == [0]


def test_colliding_high_halves_are_told_apart():
    table = StateTable()
    same_hi = ["00" * 8 + "00" * 8, "00" * 8 + "11" * 8, "00" * 8 + "22" * 8, "ff" * 16]
    table.record([same_hi[:2], same_hi[1:3]], [True, False])
    assert table.n_total(same_hi).tolist() == [1, 2, 1, 0]
    assert table.n_success(same_hi).tolist() == [1, 1, 0, 0]
    table.record([[same_hi[3], same_hi[0]]], [True])
    assert table.n_total(list(reversed(same_hi))).tolist() == [1, 1, 2, 2]


def test_won_must_be_booleans():
    from openrlhf_3spo.state.local import LocalStateScores

    table = StateTable()
    with pytest.raises(ValueError, match="won must hold booleans"):
        table.record([["a"], ["b"]], [True, "False"])  # bool("False") is True: a loss counted as a win
    with pytest.raises(ValueError, match="won must hold booleans"):
        LocalStateScores().record([["a"]], [2])
    table.record([["a"], ["b"]], [1, False])
    assert table.n_success(["a", "b"]).tolist() == [1, 0]
