"""Loading the official layout (ALFWorld's skip rules) and `openrlhf-3spo make-dataset alfworld`."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from openrlhf_3spo.envs.alfworld import (
    SHIPPED_DATA,
    TASK_TYPES,
    dataset_rows,
    find_games,
    game_file_of,
)


def test_shipped_splits_hold_every_task_type():
    for split in ("train", "valid_seen", "valid_unseen"):
        games = find_games(split, "shipped")
        types = {g.split(os.sep)[-3].split("-")[0] for g in games}
        assert types == set(TASK_TYPES), split


def _trial(root, split, folder, task_type="pick_and_place_simple", solvable=True, with_game=True):
    src = find_games("train", "shipped")[0]
    trial = root / "json_2.1.1" / split / folder / "trial_T1"
    trial.mkdir(parents=True)
    (trial / "traj_data.json").write_text(json.dumps({"task_type": task_type}))
    if with_game:
        data = json.loads(open(src).read())
        data["solvable"] = solvable
        (trial / "game.tw-pddl").write_text(json.dumps(data))
    return str(trial / "game.tw-pddl")


def test_skip_rules_follow_alfworld(tmp_path):
    kept = _trial(tmp_path, "train", "pick_and_place_simple-Apple-None-Fridge-1")
    _trial(tmp_path, "train", "pick_and_place_simple-Apple-None-Fridge-movable-2")
    _trial(tmp_path, "train", "pick_and_place_simple-AppleSliced-None-Fridge-3")
    _trial(tmp_path, "train", "pick_and_place_simple-Apple-None-Fridge-4", solvable=False)
    _trial(tmp_path, "train", "pick_and_place_simple-Apple-None-Fridge-5", with_game=False)
    heat = _trial(tmp_path, "train", "pick_heat_then_place_in_recep-Apple-None-Fridge-6", "pick_heat_then_place_in_recep")
    assert find_games("train", str(tmp_path)) == sorted([kept, heat])
    assert find_games("train", str(tmp_path), task_types=["pick_heat_then_place_in_recep"]) == [heat]


def test_data_root_errors_name_the_cause(tmp_path, monkeypatch):
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="nowhere/json_2.1.1/train.*ALFWORLD_DATA"):
        find_games("train")
    (tmp_path / "json_2.1.1" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="no playable game"):
        find_games("train", str(tmp_path))
    with pytest.raises(ValueError, match="split"):
        find_games("test", str(tmp_path))
    with pytest.raises(ValueError, match="unknown ALFWorld task types"):
        find_games("train", str(tmp_path), task_types=["cook_dinner"])
    trial = tmp_path / "json_2.1.1" / "train" / "x" / "trial"
    trial.mkdir(parents=True)
    (trial / "traj_data.json").write_text("{not json")
    with pytest.raises(ValueError, match="traj_data.json is not a valid"):
        find_games("train", str(tmp_path))


def test_rows_identify_their_game(tmp_path, monkeypatch):
    rows = dataset_rows("valid_unseen", "shipped")
    assert len(rows) == len(find_games("valid_unseen", "shipped"))
    for row in rows:
        label = json.loads(row["label"])
        assert label["env"] == "alfworld" and label["root"] == "shipped" and label["task_type"] in TASK_TYPES
        assert os.path.isfile(game_file_of(row["label"]))
    # a user's own data: labels are relative to $ALFWORLD_DATA, so they move with it
    shutil.copytree(os.path.join(SHIPPED_DATA, "json_2.1.1"), tmp_path / "json_2.1.1")
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    user_rows = dataset_rows("train", None)
    assert all(game_file_of(r["label"]).startswith(str(tmp_path)) for r in user_rows)
    with pytest.raises(ValueError, match="not JSON"):
        game_file_of("pick up the apple")


def test_rows_made_with_data_dir_record_it(tmp_path, monkeypatch):
    """`make-dataset --data DIR`: the labels name DIR, so the rollout finds the games without
    $ALFWORLD_DATA (before, they named $ALFWORLD_DATA and the rollout failed with "file not found")."""
    from openrlhf_3spo.agents.textenv import make_env

    shutil.copytree(os.path.join(SHIPPED_DATA, "json_2.1.1"), tmp_path / "json_2.1.1")
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    rows = dataset_rows("train", str(tmp_path))
    assert {json.loads(r["label"])["root"] for r in rows} == {str(tmp_path)}
    assert all(game_file_of(r["label"]).startswith(str(tmp_path)) for r in rows)
    assert make_env(rows[0]["label"]).reset().admissible_actions


def test_make_dataset_cli(tmp_path):
    out = tmp_path / "sub" / "valid_seen.jsonl"
    cmd = [sys.executable, "-m", "openrlhf_3spo.cli", "make-dataset", "alfworld", "--split", "valid_seen"]
    result = subprocess.run(cmd + ["--data", "shipped", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(find_games("valid_seen", "shipped")) and set(rows[0]) == {"input", "label"}
    bad = subprocess.run(cmd + ["--data", str(tmp_path / "missing"), "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip().splitlines()[-1]]  # one line, no traceback
    assert "openrlhf-3spo: error: ALFWorld data: no folder" in bad.stderr


@pytest.mark.parametrize("where, message", [
    ("file/x.jsonl", "is a file, not a folder"), ("folder", "it is a folder"), ("/proc/x.jsonl", "cannot write /proc/x.jsonl"),
])
def test_make_dataset_bad_out_paths_give_one_line(tmp_path, where, message):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder").mkdir()
    out = where if where.startswith("/") else str(tmp_path / where)
    cmd = [sys.executable, "-m", "openrlhf_3spo.cli", "make-dataset", "alfworld", "--split", "train", "--data", "shipped", "--out", out]
    result = subprocess.run(cmd, capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("openrlhf-3spo: error: ") and message in lines[0]
