"""The CPU demo: the shipped 3SPO executor and the GRPO executor on real ALFWorld games, equal
env-step budgets, real files; the official data layout; one-line errors."""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from conftest import param_id

from openrlhf_3spo.cli import main
from openrlhf_3spo.demo.alfworld_demo import DemoArgs, run
from openrlhf_3spo.envs.alfworld import SHIPPED_DATA

DEMO_DIR = pathlib.Path(__file__).parents[1] / "openrlhf_3spo" / "demo"
SMALL = dict(arms=("3spo", "grpo"), games=2, env_steps=300, max_steps=8, batch_tasks=2, trajectories=4, g_max=4, eval_every=2)


def rows_of(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run(DemoArgs(**SMALL), str(out))


def test_short_run_writes_metrics_summary_and_plot(small_run):
    out, summary = small_run
    assert {p.name for p in out.iterdir()} == {"metrics.jsonl", "curves.png", "summary.json"}
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "summary.json").read_text()) == summary
    assert set(summary["arms"]) == {"3spo", "grpo"} and summary["games"] == 2
    rows = rows_of(out)
    assert {r["arm"] for r in rows} == {"3spo", "grpo"}
    for arm in ("3spo", "grpo"):
        mine = [r for r in rows if r["arm"] == arm]
        assert mine[0]["env_steps"] == 0 and "eval_success" in mine[0] and "eval_success" in mine[-1]
        # each arm stops at the first iteration that reaches the budget: equal within one iteration
        assert mine[-2]["env_steps"] < SMALL["env_steps"] <= mine[-1]["env_steps"]
        assert all(0 <= r["eval_success"] <= 1 for r in mine if "eval_success" in r)
        assert [r["unique_states"] for r in mine] == sorted(r["unique_states"] for r in mine)


def test_3spo_arm_trains_on_step_groups_and_grows_its_table(small_run):
    out, summary = small_run
    spo3 = [r for r in rows_of(out) if r["arm"] == "3spo"][1:]
    assert len(spo3) >= 2 and all(r["trained_samples"] > 0 for r in spo3)
    assert spo3[-1]["table_size"] > spo3[0]["table_size"] > 0
    assert sum(sum(r["n_histogram"]) for r in spo3) > 0 and len(spo3[0]["n_histogram"]) == SMALL["g_max"] + 1
    assert spo3[-1]["forks"] > 0  # candidates run in forks, and their steps count
    grpo = [r for r in rows_of(out) if r["arm"] == "grpo"][1:]
    assert all(r["trained_samples"] == r["step_samples"] for r in grpo)  # every GRPO step trains
    assert summary["arms"]["3spo"]["n_histogram"]


def test_demo_runs_the_shipped_executors_not_its_own_rollout():
    source = (DEMO_DIR / "alfworld_demo.py").read_text()
    assert "from openrlhf_3spo.rollout.executor import SPO3Executor" in source
    assert "from openrlhf_3spo.rollout.grpo import GRPOExecutor" in source
    for path in DEMO_DIR.glob("*.py"):
        text = path.read_text()
        for call in ("adaptive_n(", "step_reward(", "render_prompt(", "StateTable(", "parse_action("):
            assert call not in text, f"{path.name} calls {call}: the demo must go through the executors"
    assert not (DEMO_DIR / "corridor.py").exists()


def test_cli_reads_games_in_the_official_layout(tmp_path):
    data = tmp_path / "alfworld"
    for game in sorted((pathlib.Path(SHIPPED_DATA) / "json_2.1.1" / "valid_seen").iterdir())[:2]:
        shutil.copytree(game, data / "json_2.1.1" / "valid_unseen" / game.name)
    out = tmp_path / "out"
    flags = ["--games", "2", "--env-steps", "60", "--max-steps", "5", "--g-max", "3", "--trajectories", "2",
             "--batch-tasks", "2", "--seeds", "3"]
    result = subprocess.run(
        [sys.executable, "-m", "openrlhf_3spo.cli", "demo", "--data", str(data), "--split", "valid_unseen", *flags, "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["games"] == 2 and summary["settings"]["split"] == "valid_unseen" and summary["settings"]["seeds"] == [3]
    assert {r["seed"] for r in rows_of(out)} == {3}
    assert json.loads(result.stdout.splitlines()[-1]).keys() == {"3spo", "grpo", "gigpo"}  # the default arms


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--env-steps", "0"], "--env-steps must be >= 1, got 0"),
        (["--env-steps", "many"], "argument --env-steps: invalid int value: 'many'"),
        (["--seeds", "0,x"], "--seeds must be comma-separated integers, got '0,x'"),
        (["--arms", "3spo,ppo"], "unknown arms ['ppo']"),
        (["--split", "test"], "split must be one of"),
        (["--data", "/nonexistent"], "ALFWorld data: no folder /nonexistent/json_2.1.1/train"),
        (["--iterations", "3"], "unrecognized arguments: --iterations 3"),
    ],
    ids=param_id,
)
def test_bad_flags_give_one_line(flags, message, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", *flags, "--out", str(tmp_path)])
    assert str(exit_.value.code).startswith("openrlhf-3spo: error: ") and message in str(exit_.value.code)
    assert "\n" not in str(exit_.value.code)


def test_bad_flag_on_the_command_line_prints_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "openrlhf_3spo.cli", "demo", "--env-steps", "0", "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["openrlhf-3spo: error: --env-steps must be >= 1, got 0"]


def test_a_new_run_keeps_the_last_results_until_it_has_its_own(small_run, tmp_path, monkeypatch):
    """A second run in the same folder that dies after its first arm: the first run's three files
    are as they were, and the second's partial metrics are readable beside them."""
    import openrlhf_3spo.demo.alfworld_demo as demo

    out, _ = small_run
    folder = tmp_path / "demo"
    shutil.copytree(out, folder)
    before = {name: (folder / name).read_bytes() for name in demo.OUTPUTS}
    train_arm = demo.train_arm

    async def dies_on_grpo(arm, *args):
        if arm == "grpo":
            raise RuntimeError("killed")
        return await train_arm(arm, *args)

    monkeypatch.setattr(demo, "train_arm", dies_on_grpo)
    with pytest.raises(RuntimeError, match="killed"):
        run(DemoArgs(**dict(SMALL, env_steps=100, workers=1)), str(folder))  # in this process: the patch holds
    assert {name: (folder / name).read_bytes() for name in demo.OUTPUTS} == before
    partial = rows_of(folder / ".incoming")
    assert partial and {r["arm"] for r in partial} == {"3spo"} and partial[-1]["env_steps"] >= 100


def test_the_warm_start_clones_the_walkthroughs():
    """Behaviour cloning on the games' own walkthroughs: one sample per walkthrough step, with the
    executors' prompts, and a policy that wins games greedily where zero weights win none."""
    import asyncio

    from openrlhf_3spo.demo.alfworld_demo import evaluate, walkthrough_samples, warm_policy
    from openrlhf_3spo.demo.policy import ByteTokenizer
    from openrlhf_3spo.envs.alfworld import find_games, load_game

    games = find_games("train", "shipped")
    samples = walkthrough_samples(games, DemoArgs(), ByteTokenizer())
    assert [s["action"] for s in samples] == [a for g in games for a in load_game(g)["walkthrough"]]
    assert "Admissible actions: [" in ByteTokenizer().decode(samples[0]["context_ids"])
    cold, warm = (asyncio.run(evaluate(warm_policy(DemoArgs(warm_start_epochs=k), games, 0), games, DemoArgs()))
                  for k in (0, 8))
    assert cold == 0 and warm >= 3 / 12, (cold, warm)


def test_the_gigpo_arm_trains_every_step_of_its_episodes(tmp_path):
    summary = run(DemoArgs(**dict(SMALL, arms=("gigpo",))), str(tmp_path))
    rows = [r for r in rows_of(tmp_path) if r["arm"] == "gigpo"][1:]
    assert rows and all(r["trained_samples"] == r["step_samples"] > 0 for r in rows)
    assert set(summary["arms"]) == {"gigpo"}


@pytest.mark.parametrize("arm", ["3spo", "3spo_bt_best", "3spo_bt_shallowest", "3spo_bt_sampled", "3spo_continue_sampled", "3spo_independent"])
def test_every_3spo_rollout_rule_accounts_for_its_env_steps(arm, tmp_path):
    """Main path, candidates' forks and backtracked continuations (or later episodes) add up to the
    env steps the budget counted; each candidate is one generated sample of one engine request."""
    summary = run(DemoArgs(**dict(SMALL, arms=(arm,), env_steps=150)), str(tmp_path))
    rows = [r for r in rows_of(tmp_path) if r["arm"] == arm]
    spent = summary["arms"][arm]["env_steps_by_kind"]
    assert sum(spent.values()) == rows[-1]["env_steps"] > 0
    assert spent["fork_steps"] > 0
    assert rows[-1]["generated_samples"] > rows[-1]["engine_requests"] > 0
    if arm == "3spo_independent":
        assert summary["arms"][arm]["backtrack_depth_mean"] is None  # nothing backtracks: episodes restart
        assert spent["continuation_steps"] > 0
