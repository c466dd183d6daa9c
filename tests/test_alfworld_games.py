"""The shipped ALFWorld games: each loads in the real engine and its walkthrough wins exactly at its last
step, the set covers every task type and split, and the generator reproduces it byte for byte."""

import collections
import functools
import json
import os
import re
import sys

import glob

import pytest
import textworld
from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredTWEnv
from textworld.envs import PddlEnv

from openrlhf_3spo.envs import alfworld_games as ag

# every game folder on disk, also those ALFWorld's loader would skip
GAMES = sorted(glob.glob(os.path.join(ag.SHIPPED_DATA, ag.GAMES_DIRNAME, "*", "*", "*", "game.tw-pddl")))
SCENES = ag.load_scenes()


def _game_id(path):
    return os.path.relpath(os.path.dirname(path), os.path.join(ag.SHIPPED_DATA, ag.GAMES_DIRNAME))


@functools.lru_cache(maxsize=None)
def _play(path):
    """Loads a shipped game in a fresh engine and replays its walkthrough.

    -> (walkthrough, first state, won after each command, whether each command was admissible)"""
    with open(path) as f:
        walkthrough = json.load(f)["walkthrough"]
    infos = textworld.EnvInfos(won=True, admissible_commands=True)
    env = AlfredDemangler(PddlEnv(infos), shuffle=False)
    argv = sys.argv  # Fast Downward's translator overwrites it
    try:
        env.load(path)
        first = env.reset()
    finally:
        sys.argv = argv
    state, won, admissible = first, [], []
    for command in walkthrough:
        admissible.append(command in state["admissible_commands"])
        state, _, _ = env.step(command)
        won.append(state["won"])
    return walkthrough, first, won, admissible


def _traj_data(path):
    with open(os.path.join(os.path.dirname(path), "traj_data.json")) as f:
        return json.load(f)


def _receptacles_offered(state):
    return sorted(c[len("go to ") :] for c in state["admissible_commands"] if c.startswith("go to "))


@pytest.mark.parametrize("path", GAMES, ids=_game_id)
def test_walkthrough_wins_exactly_at_its_last_step(path):
    walkthrough, first, won, admissible = _play(path)
    assert walkthrough, "empty walkthrough"
    assert first["won"] is False
    assert all(admissible), [c for c, ok in zip(walkthrough, admissible) if not ok]
    assert won == [False] * (len(walkthrough) - 1) + [True]


@pytest.mark.parametrize("path", GAMES, ids=_game_id)
def test_first_observation_lists_every_receptacle_and_the_task(path):
    _, first, _, _ = _play(path)
    feedback = first.feedback
    assert "Your task is to: " in feedback
    seen = re.search(r"you see (.*?)\.\n", feedback).group(1)
    listed = sorted(item[len("a ") :] for item in re.split(r",? and |, ", seen))
    offered = _receptacles_offered(first)
    assert listed == offered
    with open(path) as f:
        objects_section = json.load(f)["pddl_problem"].split("(:init", 1)[0]
    declared = objects_section.count(" - receptacle\n")
    assert len(offered) == declared
    task = feedback.split("Your task is to: ", 1)[1]
    params = _traj_data(path)["pddl_params"]
    for target in (params["object_target"], params["parent_target"], params["toggle_target"]):
        assert target.lower() in task


def test_shipped_set_covers_task_types_splits_and_large_scenes():
    per_type = collections.Counter(_traj_data(path)["task_type"] for path in GAMES)
    assert set(per_type) == set(ag.TASK_TYPES)
    assert min(per_type.values()) >= 4, per_type
    splits = {_game_id(path).split(os.sep)[0] for path in GAMES}
    assert splits == set(ag.SPLITS)
    large = [path for path in GAMES if len(_receptacles_offered(_play(path)[1])) >= 20]
    assert len(large) >= 4, [_game_id(p) for p in large]


def test_shipped_games_match_the_scene_descriptions():
    """One game per scene, none stale, and each problem is what the generator builds from its scene."""
    by_folder = {ag.game_relpath(scene): scene for scene in SCENES}
    shipped = {os.path.relpath(os.path.dirname(path), ag.SHIPPED_DATA): path for path in GAMES}
    assert sorted(by_folder) == sorted(shipped)
    for folder, path in shipped.items():
        with open(path) as f:
            game = json.load(f)
        assert game["pddl_problem"] == ag.build_problem(by_folder[folder]), folder
        assert game["solvable"] is True
        assert "UNKNOWN GOAL" not in game["grammar"]


def test_official_loader_collects_every_shipped_game():
    root = os.path.join(ag.SHIPPED_DATA, ag.GAMES_DIRNAME)
    config = {
        "env": {"goal_desc_human_anns_prob": 0, "task_types": [1, 2, 3, 4, 5, 6]},
        "dataset": {
            "data_path": os.path.join(root, "train"),
            "eval_id_data_path": os.path.join(root, "valid_seen"),
            "eval_ood_data_path": os.path.join(root, "valid_unseen"),
            "num_train_games": -1,
            "num_eval_games": -1,
        },
    }
    collected = []
    for train_eval in ("train", "eval_in_distribution", "eval_out_of_distribution"):
        collected += AlfredTWEnv(config, train_eval=train_eval).game_files
    assert sorted(os.path.realpath(p) for p in collected) == sorted(os.path.realpath(p) for p in GAMES)


def test_generator_reproduces_a_shipped_game_byte_for_byte(tmp_path):
    scene = min(SCENES, key=lambda s: (sum(s["receptacles"].values()), len(s["objects"])))
    folder = ag.write_game(scene, str(tmp_path))
    shipped = os.path.join(ag.SHIPPED_DATA, ag.game_relpath(scene))
    for name in ("game.tw-pddl", "traj_data.json"):
        with open(os.path.join(folder, name), "rb") as new, open(os.path.join(shipped, name), "rb") as old:
            assert new.read() == old.read(), name
    assert sorted(os.listdir(folder)) == ["game.tw-pddl", "traj_data.json"]  # no temp files left


def test_unreachable_goal_raises_value_error_naming_the_scene(tmp_path):
    # Heating needs a microwave; this kitchen has none.
    scene = {
        "name": "test-heat-without-microwave",
        "split": "train",
        "scene_num": 9,
        "task_type": "pick_heat_then_place_in_recep",
        "object_target": "Egg",
        "parent_target": "CounterTop",
        "receptacles": {"CounterTop": 1, "Fridge": 1},
        "objects": [["Egg", "Fridge", 1]],
    }
    with pytest.raises(ValueError, match="test-heat-without-microwave.*unreachable"):
        ag.write_game(scene, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_malformed_scene_raises_value_error_naming_the_scene():
    scene = dict(SCENES[0], name="test-undeclared-receptacle", objects=[["Apple", "Bed", 1]])
    with pytest.raises(ValueError, match="test-undeclared-receptacle.*Bed 1"):
        ag.make_game(scene)
