"""Bad input and faults, as a hostile user would bring them: settings, formulas, model outputs, env
actions and lifecycles, snapshots, data files, the CLI, caches and concurrency. Every case must end
in a one-line error that names its cause (`error`) or in a documented safe behaviour (`safe`); a
traceback from deep inside, a hang or a silent wrong result fails it. The README's reliability
section quotes this suite's counts (checked by the last test)."""

import asyncio
import io
import json
import os
import re
import threading
import zipfile
from contextlib import redirect_stderr

import numpy as np
import pytest

from conftest import REPO
from openrlhf_3spo.algo.formulas import adaptive_n, group_advantages
from openrlhf_3spo.envs.base import Observation
from openrlhf_3spo.envs.corridor import CorridorEnv
from openrlhf_3spo.envs.pool import LocalEnv
from openrlhf_3spo.envs.prompting import parse_action
from openrlhf_3spo.rollout.request import TaskRequest
from openrlhf_3spo.settings import Settings
from openrlhf_3spo.state.actor import StateScoreActor, load_actor_snapshot
from openrlhf_3spo.state.local import LocalStateScores
from openrlhf_3spo.state.snapshot import FILE_NAME, load_snapshot

CASES = []  # (family, id, kind), filled by `case`


def case(family, kind, cases):
    """Registers parametrized cases of one family; kind: "error" or "safe"."""
    CASES.extend((family, case_id, kind) for case_id, *_ in cases)
    names = ["case_id"] + [f"a{i}" for i in range(len(cases[0]) - 1)]  # a0, a1, ...: the case's fields
    return pytest.mark.parametrize(names, cases, ids=[c[0] for c in cases])


# ---- settings: wrong types, out of range --------------------------------------------------------

SETTINGS = [
    ("alpha-inf", {"alpha": float("inf")}, "--spo3.alpha must be a finite number"),
    ("alpha-nan", {"alpha": float("nan")}, "--spo3.alpha must be a finite number"),
    ("alpha-zero", {"alpha": 0.0}, "--spo3.alpha must be > 0"),
    ("alpha-string", {"alpha": "50"}, "--spo3.alpha must be a number"),
    ("xi-inf", {"xi": float("inf")}, "--spo3.xi must be a finite number"),
    ("zeta-above-one", {"zeta": 1.5}, "--spo3.zeta must be <= 1"),
    ("omega_k-inf", {"omega_k": float("inf")}, "--spo3.omega_k must be a finite number"),
    ("invalid_penalty-inf", {"invalid_penalty": float("inf")}, "--spo3.invalid_penalty must be a finite number"),
    ("invalid_penalty-negative", {"invalid_penalty": -0.1}, "--spo3.invalid_penalty must be >= 0"),
    ("g_max-huge", {"g_max": 10**8}, "--spo3.g_max must be <= 1024"),
    ("g_max-fraction", {"g_max": 8.5}, "--spo3.g_max must be a whole number"),
    ("g_max-bool", {"g_max": True}, "--spo3.g_max must be a whole number"),
    ("history_length-negative", {"history_length": -1}, "--spo3.history_length must be >= 0"),
    ("max_steps-negative", {"max_steps": -1}, "--spo3.max_steps must be >= 0"),
    ("env_workers-zero", {"env_workers": 0}, "--spo3.env_workers must be >= 1"),
    ("state_key-unknown", {"state_key": "pixels"}, "--spo3.state_key must be one of"),
    ("state_key-number", {"state_key": 3}, "--spo3.state_key must be a string"),
    ("gigpo_gamma-above-one", {"gigpo_gamma": 1.5}, "--spo3.gigpo_gamma must be <= 1"),
    ("gigpo_step_weight-negative", {"gigpo_step_weight": -1.0}, "--spo3.gigpo_step_weight must be >= 0"),
]


@case("settings", "error", SETTINGS)
def test_settings(case_id, a0, a1):
    found = Settings.problems(a0)
    assert len(found) == 1 and found[0].startswith(a1), found
    with pytest.raises(ValueError, match=re.escape(a1)):  # labels from a task file are checked the same way
        TaskRequest.from_label(dict(TaskRequest("task").to_label(), settings=dict(Settings().to_dict(), **a0)))


# ---- formulas -----------------------------------------------------------------------------------

FORMULAS = [
    ("adaptive_n-g_max-1e30", lambda: adaptive_n(1.0, 1e30), "g_max must be a whole number"),
    ("adaptive_n-g_max-2**70", lambda: adaptive_n(1.0, 2**70), "g_max must be a whole number"),
    ("adaptive_n-g_max-nan", lambda: adaptive_n(1.0, float("nan")), "g_max must be a whole number"),
    ("adaptive_n-g_max-string", lambda: adaptive_n(1.0, "8"), "g_max must be a whole number"),
    ("group_advantages-lengths", lambda: group_advantages([1.0, 0.0], [0]), "mismatched lengths"),
    ("group_advantages-norm", lambda: group_advantages([1.0], [0], norm="z"), "norm must be one of"),
]


@case("formulas", "error", FORMULAS)
def test_formulas(case_id, a0, a1):
    with pytest.raises(ValueError, match=re.escape(a1)):
        a0()


# ---- model outputs ------------------------------------------------------------------------------

ACTIONS = ["look", "go to desk 1", "take mug 1 from desk 1"]
OUTPUTS = [
    ("missing-tags", "look", None),
    ("empty-output", "", None),
    ("not-a-string", None, None),
    ("unclosed-tag", "<action>look", None),
    ("empty-tag", "<action></action>", None),
    ("echoed-instruction", "<think>I answer in <action> tags</think><action>look</action>", "look"),
    ("nested-tags", "<action><action>look</action></action>", None),  # inner text "look</action>": invalid
    ("repeated-tags-last-wins", "<action>look</action> no, <action>go to desk 1</action>", "go to desk 1"),
    ("case-and-spaces", "<ACTION>  Go To  Desk 1 </Action>", "go to desk 1"),
    ("near-miss", "<action>go to desk 12</action>", None),
    ("control-characters", "<action>lo\x00ok</action>", None),
    ("unicode", "<action>lоok</action>", None),  # a Cyrillic o
    ("inadmissible", "<action>fly away</action>", None),
]


@case("model outputs", "safe", OUTPUTS)
def test_model_outputs(case_id, a0, a1):
    """Safe behaviour: the last well-formed tag's admissible action, or None (an invalid step)."""
    assert parse_action(a0, ACTIONS) == a1


HUGE = [
    ("16000-unclosed-tags", "<action>" * 16000, None),
    ("16000-closing-tags", "</action>" * 16000, None),
    ("1MB-reasoning", "x" * 1_000_000 + "<action>look</action>", "look"),
]


@case("model outputs", "safe", HUGE)
def test_huge_model_outputs_parse(case_id, a0, a1):
    assert parse_action(a0, ACTIONS) == a1  # linear time: benchmarks/parse_action.py


# ---- env actions and lifecycle ------------------------------------------------------------------


def _corridor():
    env = LocalEnv(CorridorEnv("ab"))
    asyncio.run(env.reset())
    return env


def _closed(call):
    env = _corridor()
    env.close()
    return lambda: asyncio.run(call(env))


ENV_ERRORS = [
    ("step-after-close", _closed(lambda e: e.step("a")), RuntimeError, "CorridorEnv: step() after close()"),
    ("fork-after-close", _closed(lambda e: e.fork()), RuntimeError, "CorridorEnv: fork() after close()"),
    ("reset-after-close", _closed(lambda e: e.reset()), RuntimeError, "CorridorEnv: reset() after close()"),
    ("get-after-close", _closed(lambda e: e.get("task")), RuntimeError, "CorridorEnv: get() after close()"),
    ("won-as-string", lambda: Observation("x", won="False"), TypeError, "Observation.won must be a bool, got 'False'"),
    ("done-as-string", lambda: Observation("x", done="yes"), TypeError, "Observation.done must be a bool"),
    ("webshop-negative-invalid-penalty", lambda: _webshop_env(invalid_penalty=-1), ValueError,
     "invalid_penalty must be a finite number >= 0 (it is subtracted), got -1"),
    ("webshop-goal-out-of-range", lambda: _webshop_env(goal_index=10**6), ValueError, "WebShop goal 1000000 does not exist"),
]


def _webshop_env(goal_index=0, **kwargs):
    from openrlhf_3spo.envs.webshop import WebShopEnv

    return WebShopEnv(goal_index, "shipped", **kwargs)


@case("env actions", "error", ENV_ERRORS)
def test_env_errors(case_id, a0, a1, a2):
    with pytest.raises(a1, match=re.escape(a2)):
        a0()


ENV_ACTIONS = [
    ("empty", ""),
    ("huge", "a" * 1_000_000),
    ("unicode", "ä🙂"),
    ("control-characters", "a\x00\n\x1b"),
    ("not-a-string", None),
    ("near-miss", "a "),
]


@case("env actions", "safe", ENV_ACTIONS)
def test_env_actions(case_id, a0):
    """Safe behaviour: an inadmissible action is an invalid step that leaves the state as it was."""
    env = CorridorEnv("ab")
    start = env.reset()
    obs = env.step(a0)
    assert not obs.valid and not obs.done and obs.state_key == start.state_key


def test_stepping_after_done_is_an_error():
    env = CorridorEnv("a")
    env.reset()
    assert env.step("press a").done
    with pytest.raises(RuntimeError, match="the episode is over; call reset()"):
        env.step("press a")


CASES.append(("env actions", "step-after-done", "error"))


# ---- snapshots ----------------------------------------------------------------------------------


def _snapshot(tmp_path):
    actor = StateScoreActor()
    actor.record([["aa" * 16, "bb" * 16]], [True])
    actor.advance()
    actor.save(str(tmp_path))
    return os.path.join(tmp_path, FILE_NAME)


def _rewrite(path, header=None, **arrays):
    """The snapshot at `path` with arrays replaced, and its header changed by `header(dict)`, or
    replaced by raw bytes."""
    with np.load(path) as f:
        stored = dict(f)
    if callable(header):
        header = json.dumps(header(json.loads(stored["header"].tobytes()))).encode()
    if header is not None:
        stored["header"] = np.frombuffer(header, dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **{**stored, **arrays})


SNAPSHOTS = [
    ("zero-length", lambda p: open(p, "wb").close(), "corrupt or truncated"),
    ("truncated", lambda p: open(p, "r+b").truncate(os.path.getsize(p) // 2), "corrupt or truncated"),
    ("garbage", lambda p: open(p, "wb").write(b"\x00garbage" * 50), "corrupt or truncated"),
    ("npy-in-place", lambda p: np.save(open(p, "wb"), np.zeros(3)), "corrupt or truncated"),
    ("wrong-format-version", lambda p: _rewrite(p, header=lambda h: dict(h, format_version=99)), "format version 99"),
    ("header-not-json", lambda p: _rewrite(p, header=b"\xff{not json"), "corrupt or truncated"),
    ("header-a-list", lambda p: _rewrite(p, header=b"[1, 2]"), "format version None"),
    ("keys-wrong-shape", lambda p: _rewrite(p, keys=np.zeros((2, 8), np.uint8)), "keys must be rows of 16 bytes"),
    ("counts-2d", lambda p: _rewrite(p, n_total=np.ones((2, 1), np.int64)), "n_total must be a 1-D integer array"),
    ("counts-float", lambda p: _rewrite(p, n_success=np.ones(2)), "n_success must be a 1-D integer array"),
    ("meta-a-list", lambda p: _rewrite(p, header=lambda h: dict(h, meta=[1])), "meta must be a JSON object"),
    ("meta-without-version", lambda p: _rewrite(p, header=lambda h: dict(h, meta={})), "is not an actor's"),
]


@case("snapshots", "error", SNAPSHOTS)
def test_snapshots(case_id, a0, a1, tmp_path):
    path = _snapshot(tmp_path)
    a0(path)
    with pytest.raises(ValueError, match=re.escape(a1)) as error:
        load_actor_snapshot(str(tmp_path))
    assert str(tmp_path) in str(error.value)  # the message names the file


# ---- data files ---------------------------------------------------------------------------------


def _alfworld_copy(tmp_path, change):
    """The shipped ALFWorld train split, with `change(traj_data.json path)` applied to one game."""
    import shutil

    from openrlhf_3spo.envs.alfworld import SHIPPED_DATA as ALFWORLD_SHIPPED

    shutil.copytree(os.path.join(ALFWORLD_SHIPPED, "json_2.1.1", "train"), tmp_path / "json_2.1.1" / "train")
    (traj,) = sorted((tmp_path / "json_2.1.1" / "train").glob("*/*/traj_data.json"))[:1]
    change(traj)
    return str(tmp_path)


def _webshop_copy(tmp_path, name, change):
    import shutil

    from openrlhf_3spo.envs.webshop import SHIPPED_DATA as WEBSHOP_SHIPPED

    shutil.copytree(WEBSHOP_SHIPPED, tmp_path / "webshop")
    change(tmp_path / "webshop" / name)
    return str(tmp_path / "webshop")


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DATA_FILES = [
    ("alfworld-traj-empty", lambda t: _alfworld_rows(t, lambda p: p.write_text("")), "is not a valid traj_data.json"),
    ("alfworld-traj-truncated", lambda t: _alfworld_rows(t, _truncate), "is not a valid traj_data.json"),
    ("alfworld-traj-wrong-schema", lambda t: _alfworld_rows(t, lambda p: p.write_text("[1, 2]")), "is not a valid traj_data.json"),
    ("alfworld-data-missing", lambda t: _alfworld_rows_at(str(t / "none")), "ALFWorld data: no folder"),
    ("alfworld-label-not-json", lambda t: _game_of("{not json"), "ALFWorld label is not JSON"),
    ("alfworld-label-wrong-schema", lambda t: _game_of('{"env": "alfworld"}'), "ALFWorld label has no 'game' path"),
    ("webshop-items-empty", lambda t: _webshop_rows(t, "items_shuffle.json", lambda p: p.write_text("")), "is not valid JSON"),
    ("webshop-items-truncated", lambda t: _webshop_rows(t, "items_shuffle.json", _truncate), "is not valid JSON"),
    ("webshop-items-not-a-list", lambda t: _webshop_rows(t, "items_shuffle.json", lambda p: p.write_text("[]")),
     "the product file holds no products"),
    ("webshop-items-wrong-schema", lambda t: _webshop_rows(t, "items_shuffle.json", lambda p: p.write_text('[{"name": "x"}]')),
     "product record 0 has no asin"),
    ("webshop-attributes-missing", lambda t: _webshop_rows(t, "items_ins_v2.json", os.remove), "no items_ins_v2.json"),
]


def _alfworld_rows(tmp_path, change):
    return _alfworld_rows_at(_alfworld_copy(tmp_path, change))


def _alfworld_rows_at(root):
    from openrlhf_3spo.envs import alfworld

    return alfworld.dataset_rows("train", root)


def _game_of(label):
    from openrlhf_3spo.envs.alfworld import game_file_of

    return game_file_of(label)


def _webshop_rows(tmp_path, name, change):
    from openrlhf_3spo.envs import webshop

    return webshop.dataset_rows("train", _webshop_copy(tmp_path, name, change))


@case("data files", "error", DATA_FILES)
def test_data_files(case_id, a0, a1, tmp_path):
    with pytest.raises(ValueError, match=re.escape(a1)):
        a0(tmp_path)


def test_a_dataset_made_from_a_data_folder_names_it_in_its_labels(tmp_path):
    """Safe behaviour: the rollout finds the games where make-dataset found them (it once looked in
    $ALFWORLD_DATA and failed with "file not found")."""
    from openrlhf_3spo.envs import alfworld

    root = _alfworld_copy(tmp_path, lambda p: None)
    rows = alfworld.dataset_rows("train", root)
    assert {json.loads(r["label"])["root"] for r in rows} == {root}
    assert all(os.path.isfile(alfworld.game_file_of(r["label"])) for r in rows)


def test_webshop_splits_default_to_the_catalogs_size():
    """Safe behaviour: the shipped 164-goal catalog splits without --eval-goals (its default once
    asked for 500 eval goals)."""
    from openrlhf_3spo.envs import webshop

    train, evaluation = webshop.dataset_rows("train", "shipped"), webshop.dataset_rows("eval", "shipped")
    assert len(train) > len(evaluation) > 0 and len(train) + len(evaluation) == 164


CASES += [("data files", "data-folder-in-labels", "safe"), ("data files", "webshop-split-defaults", "safe")]


# ---- the CLI ------------------------------------------------------------------------------------


def _cli(*argv):
    """The CLI in this process: (exit status, stderr)."""
    from openrlhf_3spo.cli import main

    stderr = io.StringIO()
    with redirect_stderr(stderr), pytest.raises(SystemExit) as exit_:
        main(list(argv))
    code = exit_.value.code  # sys.exit(message): Python prints the message to stderr and exits 1
    return (1, stderr.getvalue() + code + "\n") if isinstance(code, str) else (code, stderr.getvalue())


def _regular_file(tmp_path):
    (tmp_path / "file").write_text("x")
    return str(tmp_path / "file" / "train.jsonl")


def _text_file(tmp_path, text):
    (tmp_path / "rows.jsonl").write_text(text)
    return str(tmp_path / "rows.jsonl")


CLI = [
    ("out-under-a-file", lambda t: ["make-dataset", "alfworld", "--data", "shipped", "--out", _regular_file(t)], "is a file, not a folder"),
    ("out-under-proc", lambda t: ["make-dataset", "alfworld", "--data", "shipped", "--out", "/proc/x.jsonl"], "cannot write /proc/x.jsonl"),
    ("out-a-folder", lambda t: ["make-dataset", "alfworld", "--data", "shipped", "--out", str(t)], "it is a folder"),
    ("data-missing", lambda t: ["make-dataset", "alfworld", "--data", str(t / "none"), "--out", str(t / "a.jsonl")], str("none")),
    ("split-unknown", lambda t: ["make-dataset", "alfworld", "--data", "shipped", "--split", "nope", "--out", str(t / "a.jsonl")], "nope"),
    ("webshop-eval-goals", lambda t: ["make-dataset", "webshop", "--data", "shipped", "--eval-goals", "500", "--out", str(t / "a.jsonl")],
     "--eval-goals must lie in [1, 163]"),
    ("agent-file-unknown-env", lambda t: ["agent-file", "minecraft", "3spo"], "minecraft"),
    ("tiny-model-out-in-use", lambda t: ["tiny-model", "--out", str(t)], "not an empty folder"),
    ("unknown-subcommand", lambda t: ["fly"], "invalid choice"),
    ("recipes-copy-onto-a-file", lambda t: ["recipes", "--copy", str(t / "in-use")], "it is a file, not a folder"),
    ("recipes-copy-under-proc", lambda t: ["recipes", "--copy", "/proc/x"], "cannot write /proc/x"),
    ("patches-copy-onto-a-file", lambda t: ["patches", "--copy", str(t / "in-use")], "it is a file, not a folder"),
    ("demo-out-under-a-file", lambda t: ["demo", "--out", str(t / "in-use")], "is a file, not a folder"),
    ("demo-lr-nan", lambda t: ["demo", "--lr", "nan"], "--lr must be a finite number > 0"),
    ("demo-temperature-zero", lambda t: ["demo", "--temperature", "0"], "--temperature must be a finite number > 0"),
    ("demo-history-negative", lambda t: ["demo", "--history-length", "-1"], "--history-length must be >= 0"),
    ("demo-g-max-one", lambda t: ["demo", "--g-max", "1"], "--g-max must be >= 2"),
    ("demo-seeds-not-numbers", lambda t: ["demo", "--seeds", "x"], "--seeds must be comma-separated integers"),
    ("demo-unknown-arm", lambda t: ["demo", "--arms", "foo"], "unknown arms ['foo']"),
    ("demo-data-missing", lambda t: ["demo", "--data", str(t / "none")], "ALFWorld data: no folder"),
    ("evaluate-model-missing", lambda t: ["evaluate", "--model", str(t / "none"), "--env", "alfworld", "--split", "valid_seen"],
     "--model"),
    ("evaluate-history-negative", lambda t: ["evaluate", "--model", str(t), "--env", "alfworld", "--split", "valid_seen",
                                             "--history-length", "-1"], "--history-length must be >= 0"),
    ("evaluate-no-tasks", lambda t: ["evaluate", "--model", str(t), "--env", "corridor"], "--env corridor needs --dataset"),
    ("evaluate-no-split", lambda t: ["evaluate", "--model", str(t), "--env", "alfworld"], "--env alfworld needs --split or --dataset"),
    ("evaluate-dataset-missing", lambda t: ["evaluate", "--model", str(t), "--env", "corridor", "--dataset", str(t / "none.jsonl")],
     "none.jsonl: no such file"),
    ("evaluate-dataset-not-rows", lambda t: ["evaluate", "--model", str(t), "--env", "corridor", "--dataset", _text_file(t, "[1, 2]\n")],
     "line 1: not a JSON object with \"input\" and \"label\""),
    ("make-dataset-task-type-unknown", lambda t: ["make-dataset", "alfworld", "--data", "shipped", "--task-types", "nope",
                                                  "--out", str(t / "a.jsonl")], "unknown ALFWorld task types ['nope']"),
    ("make-dataset-env-unknown", lambda t: ["make-dataset", "minecraft"], "invalid choice"),
]


@case("cli", "error", CLI)
def test_cli(case_id, a0, a1, tmp_path):
    (tmp_path / "in-use").write_text("")
    code, stderr = _cli(*a0(tmp_path))
    lines = stderr.strip().splitlines()
    assert code not in (0, None) and len(lines) == 1 and a1 in lines[0] and "Traceback" not in stderr, stderr


# ---- caches, concurrency ------------------------------------------------------------------------


def test_a_corrupt_search_index_cache_is_rebuilt(tmp_path):
    from openrlhf_3spo.envs.webshop import SearchIndex

    texts = ["red cotton shirt", "blue running shoes", "green tea 100 bags"]
    SearchIndex(texts, cache_dir=str(tmp_path))
    (cached,) = [d for d in tmp_path.iterdir() if not d.name.startswith(".")]
    for f in cached.iterdir():  # every file of the cache garbled
        f.write_bytes(b"\x00garbage")
    assert SearchIndex(texts, cache_dir=str(tmp_path)).search("running shoes")[:1] == [1]
    assert SearchIndex(texts, cache_dir=str(tmp_path)).search("green tea")[:1] == [2]  # the rebuilt cache loads


CASES.append(("caches", "corrupt-bm25-cache", "safe"))


def test_threads_recording_at_once_lose_no_update():
    scores = LocalStateScores()
    keys = [f"{i:032x}" for i in range(80)]

    def work(worker):
        for i in range(200):  # two distinct states a trajectory
            scores.record([[keys[(worker + i) % 40], keys[40 + (worker * 7 + i) % 40]]], [i % 3 == 0])
            if i % 50 == 0:
                scores.advance()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    scores.advance()  # what is still staged
    stats = scores.stats()
    assert stats["t"] == 1 + 8 * 200  # every trajectory counted once
    table = scores.actor.table
    assert int(table.n_total(keys).sum()) == 8 * 200 * 2


CASES.append(("concurrency", "threads-record-and-advance", "safe"))


def test_the_readme_quotes_this_suites_counts():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    errors = sum(kind == "error" for *_, kind in CASES)
    safe = sum(kind == "safe" for *_, kind in CASES)
    quoted = re.search(r"(\d+) cases: (\d+) end in a one-line error naming the cause, (\d+) in a documented safe behaviour", readme)
    assert quoted and tuple(map(int, quoted.groups())) == (len(CASES), errors, safe), (len(CASES), errors, safe)
