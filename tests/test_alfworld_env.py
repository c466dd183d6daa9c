"""ALFWorldEnv on the real engine, with the shipped games: observations, keys, fork, bad input."""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrlhf_3spo.envs.alfworld import ALFWorldEnv, find_games, load_game

TRAIN = find_games("train", "shipped")


def _game(task_type):
    return next(g for g in TRAIN if f"/{task_type}-" in g)


SMALL = _game("pick_and_place_simple")


def _walkthrough(game_file):
    return load_game(game_file)["walkthrough"]


@pytest.fixture
def env():
    env = ALFWorldEnv(SMALL)
    env.reset()
    return env


def test_reset_observation(env):
    obs = env.reset()
    assert obs.text.startswith("You are in the middle of a room. Looking quickly around you, you see ")
    assert "Welcome to TextWorld" not in obs.text
    assert env.task and obs.text.endswith(f"Your task is to: {env.task}.")
    assert {"help", "inventory", "look"} <= set(obs.admissible_actions)
    assert all(a.startswith("go to ") for a in obs.admissible_actions if a not in ("help", "inventory", "look"))
    assert (obs.reward, obs.done, obs.won, obs.valid) == (0.0, False, False, True)
    assert len(obs.state_key) == 32 and int(obs.state_key, 16) >= 0
    assert env.task_id == "/".join(SMALL.split(os.sep)[-4:-1])


@pytest.mark.parametrize("game_file", TRAIN, ids=lambda g: g.split(os.sep)[-3])
def test_walkthrough_wins_at_its_last_step_with_reward_10(game_file):
    env = ALFWorldEnv(game_file)
    env.reset()
    walkthrough = _walkthrough(game_file)
    for i, action in enumerate(walkthrough):
        obs = env.step(action)
        last = i == len(walkthrough) - 1
        assert obs.valid and obs.won == last and obs.done == last
        assert obs.reward == (10.0 if last else 0.0)


def test_invalid_action_changes_nothing_and_costs_0_1(env):
    before = env.reset()
    obs = env.step("fly to the moon")
    assert obs.text == "Nothing happens."
    assert (obs.valid, obs.reward, obs.done) == (False, pytest.approx(-0.1), False)
    assert obs.state_key == before.state_key
    assert obs.admissible_actions == before.admissible_actions


def test_state_key_is_the_state_not_the_path():
    env = ALFWorldEnv(SMALL)
    start = env.reset()
    first, second = [a for a in start.admissible_actions if a.startswith("go to ")][:2]
    via_first = env.step(first)
    direct_again = env.step(second)
    other = ALFWorldEnv(SMALL)
    other.reset()
    direct = other.step(second)
    assert direct.state_key == direct_again.state_key  # same facts, different paths
    assert via_first.state_key != direct.state_key != start.state_key
    # the same facts in another task are another state
    assert ALFWorldEnv(_game("pick_two_obj_and_place")).reset().state_key != start.state_key


def test_state_keys_are_stable_across_processes(env):
    code = (
        "from openrlhf_3spo.envs.alfworld import ALFWorldEnv\n"
        f"e = ALFWorldEnv({SMALL!r}); e.reset(); print(e.step({_walkthrough(SMALL)[0]!r}).state_key)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONHASHSEED": "123"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == env.step(_walkthrough(SMALL)[0]).state_key


def test_engine_caches_do_not_change_what_the_engine_says():
    """The memoised engine against plain textworld in a fresh process, on a walkthrough with detours."""
    game = _game("pick_clean_then_place_in_recep")
    start = ALFWorldEnv(game).reset()
    actions = ["look", "inventory", "nonsense"] + [a for a in start.admissible_actions if a.startswith("go to")][:3]
    actions += _walkthrough(game)
    code = f"""
import json, textworld
from textworld.envs import PddlEnv
from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
env = AlfredDemangler(PddlEnv(textworld.EnvInfos(won=True, admissible_commands=True)), shuffle=False)
env.load({game!r})
state = env.reset()
out = []
for action in {actions!r}:
    state, _, _ = env.step(action)
    out.append([state.feedback, state["admissible_commands"], bool(state["won"])])
print(json.dumps(out))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    plain = json.loads(result.stdout.splitlines()[-1])
    env = ALFWorldEnv(game)
    env.reset()
    ours = []
    for action in actions:
        obs = env.step(action)
        ours.append([obs.text, obs.admissible_actions, obs.won])
    assert ours == plain


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_fork_is_an_independent_copy_in_the_same_state(depth):
    game = _game("pick_heat_then_place_in_recep")
    walkthrough = _walkthrough(game)
    env = ALFWorldEnv(game)
    env.reset()
    for action in walkthrough[:depth]:
        env.step(action)
    clone = env.fork()
    assert clone.task == env.task and clone.task_id == env.task_id
    rest = walkthrough[depth:]
    # the clone plays on alone; the original is untouched, then plays the same and ends the same
    clone_obs = [clone.step(a) for a in rest]
    assert clone_obs[-1].won
    detour = env.step("dance a little")  # invalid: no state change
    assert not detour.won
    env_obs = [env.step(a) for a in rest]
    assert [o.state_key for o in env_obs] == [o.state_key for o in clone_obs]
    assert [o.admissible_actions for o in env_obs] == [o.admissible_actions for o in clone_obs]


def test_fork_then_step_matches_stepping_the_original(env):
    walkthrough = _walkthrough(SMALL)
    env.step(walkthrough[0])
    env.step(walkthrough[1])
    clone = env.fork()
    a, b = env.step(walkthrough[2]), clone.step(walkthrough[2])
    assert (a.text, a.admissible_actions, a.state_key, a.reward) == (b.text, b.admissible_actions, b.state_key, b.reward)


def test_max_steps_ends_the_episode():
    env = ALFWorldEnv(SMALL, max_steps=3)
    env.reset()
    observations = [env.step("look") for _ in range(3)]
    assert [o.done for o in observations] == [False, False, True]
    assert not observations[-1].won
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step("look")


def test_step_or_fork_before_reset_is_a_clear_error():
    env = ALFWorldEnv(SMALL)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step("look")
    with pytest.raises(RuntimeError, match="before reset"):
        env.fork()


@pytest.mark.parametrize("call", ["reset", "step", "fork"])
def test_calls_after_close_are_a_clear_error(env, call):
    """(Before: step said "before reset()", reset raised AttributeError from inside.)"""
    env.close()
    with pytest.raises(RuntimeError, match=rf"ALFWorldEnv .*: {call}\(\) after close\(\)"):
        getattr(env, call)(*(["look"] if call == "step" else []))


# ---- bad game files ----------------------------------------------------------------------------


def _copy_game(tmp_path, change):
    data = json.loads(open(SMALL).read())
    change(data)
    path = tmp_path / "json_2.1.1" / "train" / "bad-task" / "trial_0" / "game.tw-pddl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return str(path)


def test_missing_game_file(tmp_path):
    missing = str(tmp_path / "nope" / "game.tw-pddl")
    with pytest.raises(ValueError, match=f"{missing}: file not found"):
        ALFWorldEnv(missing)


def test_corrupt_game_file(tmp_path):
    path = tmp_path / "game.tw-pddl"
    path.write_text('{"pddl_domain": "trunc')
    with pytest.raises(ValueError, match="not a valid game.tw-pddl JSON file"):
        ALFWorldEnv(str(path))
    path.write_text(json.dumps({"pddl_domain": "x"}))
    with pytest.raises(ValueError, match="missing one of"):
        ALFWorldEnv(str(path))


def test_unreachable_goal_names_the_file(tmp_path):
    def unreachable(data):  # no receptacle may hold anything: the goal cannot be reached
        lines = data["pddl_problem"].splitlines()
        data["pddl_problem"] = "\n".join(line for line in lines if "(canContain" not in line)

    path = _copy_game(tmp_path, unreachable)
    with pytest.raises(ValueError, match=f"{path}: the goal is unreachable"):
        ALFWorldEnv(path).reset()


def test_pddl_syntax_error_names_the_file(tmp_path):
    path = _copy_game(tmp_path, lambda d: d.update(pddl_problem=d["pddl_problem"].replace("(:init", "(:init ((", 1)))
    with pytest.raises(ValueError, match=f"{path}: the PDDL does not parse"):
        ALFWorldEnv(path).reset()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.one_of(st.text(max_size=3000), st.sampled_from(["LOOK", " look ", "go to", "take", "\x00", "🙂"])))
def test_fuzzed_actions_are_invalid_never_exceptions(env, action):
    before = env.reset()
    obs = env.step(action)
    if action in before.admissible_actions:
        assert obs.valid
    else:
        assert not obs.valid and obs.reward == pytest.approx(-0.1) and obs.state_key == before.state_key


def test_engine_leaves_sys_argv_alone():
    import sys

    argv = list(sys.argv)
    ALFWorldEnv(SMALL).reset()
    assert sys.argv == argv
