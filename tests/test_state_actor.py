"""The state-score actor: lagged versions, batched calls, on a local Ray cluster with restarts and shards."""

import hashlib
import os
import signal
import time

import numpy as np
import pytest
import ray

from openrlhf_3spo.state.actor import StateScoreActor
from openrlhf_3spo.state.client import StateScores, shard_of


def _key(i):
    return hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest()


KEYS = [_key(i) for i in range(40)]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, namespace="spo3-tests", log_to_driver=False)
    yield
    ray.shutdown()


# ---- the actor's logic, in process -------------------------------------------------------------


def test_records_are_staged_until_advance():
    actor = StateScoreActor(alpha=1.0)
    before = actor.lookup(KEYS[:3], version=0)
    assert before["score"].tolist() == [1.0, 1.0, 1.0] and "n" not in before  # n is the executor's
    actor.record([KEYS[:2], KEYS[1:3]], [True, False])
    assert actor.lookup(KEYS[:3], version=0)["score"].tolist() == [1.0, 1.0, 1.0]  # same version, same scores
    assert actor.advance() == 1
    after = actor.lookup(KEYS[:3], version=1)
    # t = 3, alpha = 1: key0 SR 1 -> 3^-1; key1 SR 1/2 -> 3^-0.5; key2 SR 0 -> 1
    np.testing.assert_allclose(after["score"], [1 / 3, 3**-0.5, 1.0], rtol=1e-5)
    assert after["n_total"].tolist() == [1, 2, 1]
    with pytest.raises(ValueError, match="snapshot version 0 is not the current version 1"):
        actor.lookup(KEYS[:3], version=0)


def test_stats_and_tried_pairs():
    actor = StateScoreActor(xi=1)
    actor.record([[KEYS[0]], [KEYS[1]]], [False, True])
    actor.advance()
    stats = actor.stats()
    assert stats["unique_states"] == 2 and stats["t"] == 3 and stats["truncated_states"] == 1
    actor.mark_tried([b"a" * 16])
    assert actor.is_tried([b"a" * 16, b"b" * 16]) == [True, False]


def test_both_clients_satisfy_the_protocol():
    from openrlhf_3spo.state import StateScoreClient
    from openrlhf_3spo.state.local import LocalStateScores

    assert isinstance(LocalStateScores(), StateScoreClient)
    assert isinstance(StateScores([]), StateScoreClient)  # a handle on no actors: the interface only
    assert not isinstance(StateScoreActor(), StateScoreClient)  # the owner itself has no async reads


def test_bad_records_are_refused():
    actor = StateScoreActor()
    with pytest.raises(ValueError, match="mismatched lengths"):
        actor.record([KEYS[:2]], [True, False])
    with pytest.raises(ValueError, match="lists of str"):
        actor.record([[1, 2]], [True])


# ---- on Ray ------------------------------------------------------------------------------------


@ray.remote
def _client_records(name, offset, rounds):
    scores = StateScores.connect(name)
    for r in range(rounds):
        scores.record([[KEYS[offset], KEYS[20]], [KEYS[offset + 1]]], [r % 2 == 0, False])
    return rounds * 2


def test_concurrent_clients_lose_no_update(local_ray):
    scores = StateScores.create("concurrent")
    sent = ray.get([_client_records.remote("concurrent", 0, 50), _client_records.remote("concurrent", 2, 50)])
    scores.advance()
    got = scores.lookup([KEYS[0], KEYS[1], KEYS[2], KEYS[3], KEYS[20]])
    assert got["n_total"].tolist() == [50, 50, 50, 50, 100]
    assert scores.stats()["t"] == 1 + sum(sent)


def test_snapshot_version_gates_reads(local_ray):
    scores = StateScores.create("gating")
    version = scores.advance()
    first = scores.lookup(KEYS[:5], version)
    ray.get(_client_records.remote("gating", 0, 3))  # records arrive mid-batch
    np.testing.assert_array_equal(scores.lookup(KEYS[:5], version)["score"], first["score"])
    new_version = scores.advance()
    assert scores.lookup(KEYS[:1], new_version)["n_total"].tolist() == [3]
    with pytest.raises(ValueError, match="is not the current version"):
        scores.lookup(KEYS[:5], version)


def test_killed_actor_comes_back_with_its_snapshot_and_reports_the_loss(local_ray, tmp_path):
    scores = StateScores.create("restart", snapshot_dir=str(tmp_path))
    scores.record([KEYS[:3], KEYS[2:5]], [True, False])
    scores.advance()  # snapshot: 2 trajectories
    saved_hash = scores.content_hash()
    scores.record([KEYS[5:7]] * 4, [True] * 4)  # staged, never applied: lost in the crash
    actor = scores.actors[0]
    pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 60
    while True:
        try:
            if ray.get(actor.__ray_call__.remote(lambda self: os.getpid())) != pid:
                break
        except ray.exceptions.RayActorError:
            pass
        assert time.time() < deadline, "actor did not restart"
        time.sleep(0.5)
    stats = scores.stats()
    assert stats["lost_records"] == 4 and stats["t"] == 3 and stats["version"] == 1
    assert scores.content_hash() == saved_hash
    scores.record([KEYS[:1]], [True])  # training goes on
    assert scores.advance() == 2 and scores.stats()["t"] == 4


def test_resume_from_a_checkpoint_folder_gives_the_same_table(local_ray, tmp_path):
    scores = StateScores.create("to-save")
    for r in range(5):
        scores.record([KEYS[r : r + 6], KEYS[10 + r : 12 + r]], [r % 2 == 0, True])
        scores.advance()
    scores.mark_tried([(KEYS[0], "go to fridge 1"), (KEYS[1], "look")])
    ckpt = tmp_path / "ckpt" / "spo3_state"
    scores.save(str(ckpt))
    resumed = StateScores.create("resumed")
    resumed.load(str(ckpt))
    assert resumed.content_hash() == scores.content_hash()
    assert resumed.stats()["t"] == scores.stats()["t"] == 11
    assert resumed.is_tried([(KEYS[0], "go to fridge 1"), (KEYS[0], "look")]) == [True, False]


def test_two_shards_score_like_one(local_ray):
    one, two = StateScores.create("one-shard"), StateScores.create("two-shards", num_shards=2)
    rng = np.random.default_rng(0)
    for _ in range(4):
        trajectories = [list(rng.choice(KEYS, size=6)) for _ in range(5)]
        won = [bool(w) for w in rng.random(5) < 0.4]
        one.record(trajectories, won)
        two.record(trajectories, won)
        assert one.advance() == two.advance()
    assert {shard_of(k, 2) for k in KEYS} == {0, 1}
    a, b = one.lookup(KEYS), two.lookup(KEYS)
    for name in ("score", "raw_score", "n_total"):
        np.testing.assert_array_equal(a[name], b[name])
    s1, s2 = one.stats(), two.stats()
    assert (s1["t"], s1["unique_states"], s1["truncated_states"]) == (s2["t"], s2["unique_states"], s2["truncated_states"])
    assert s1["mean_score"] == pytest.approx(s2["mean_score"], rel=1e-12)
    two.mark_tried([(KEYS[0], "a"), (KEYS[1], "b")])
    assert two.is_tried([(KEYS[1], "b"), (KEYS[0], "b"), (KEYS[0], "a")]) == [True, False, True]


def test_async_lookup_matches(local_ray):
    import asyncio

    scores = StateScores.create("async", num_shards=2)
    scores.record([KEYS[:4]], [True])
    version = scores.advance()
    got = asyncio.run(scores.lookup_async(KEYS[:6], version))
    np.testing.assert_array_equal(got["score"], scores.lookup(KEYS[:6], version)["score"])


def test_table_is_saved_with_openrlhf_checkpoints_and_restored_on_resume(local_ray, tmp_path):
    from types import SimpleNamespace

    from openrlhf_3spo.plugin.callbacks import SPO3Callback, state_dir
    from openrlhf_3spo.plugin.compat_trainer import PPOTrainerWithCallbacks  # OpenRLHF's own save/resume code

    tables = {"train": StateScores.create("ckpt-train"), "resumed": StateScores.create("ckpt-resumed")}

    def trainer(run, load_enable, resume_step=0):
        t = PPOTrainerWithCallbacks.__new__(PPOTrainerWithCallbacks)  # no models: __init__ is not run
        t.callbacks = [SPO3Callback(t)]
        ckpt = SimpleNamespace(path=str(tmp_path), save_steps=2, load_enable=load_enable, max_num=2)
        t.args = SimpleNamespace(
            ckpt=ckpt, logger=SimpleNamespace(logging_steps=1),
            algo=SimpleNamespace(advantage=SimpleNamespace(estimator="3spo")),
            spo3=SimpleNamespace(state_actor=f"ckpt-{run}", score_shards=1),  # the run's actors, found by name
        )
        t.wandb_logger = t.tensorboard_logger = t.critic_model_group = None
        resumed = {"episode": 0, "global_step": resume_step, "total_consumed_prompts": 0, "data_loader_state_dict": {}}
        # OpenRLHF asks its actor ranks for the resume state of their latest checkpoint
        t.actor_model_group = SimpleNamespace(async_run_method=lambda **kwargs: [ray.put(resumed)])
        t.best_eval_metric_key, t.best_eval_metric_value, t._latest_eval_metric_value = "", float("-inf"), None
        return t

    os.makedirs(tmp_path / "_actor")  # OpenRLHF's own checkpoints, as it looks for them on resume
    train = trainer("train", load_enable=False)
    tables["train"].record([KEYS[:4], KEYS[3:9]], [True, False])
    tables["train"].advance()
    train.save_logs_and_checkpoints(global_step=1)  # not a save step
    assert not os.path.exists(state_dir(train.args, 1))
    train.save_logs_and_checkpoints(global_step=2)
    assert os.path.exists(os.path.join(state_dir(train.args, 2), "shard-0", "state_table.npz"))
    tables["train"].record([KEYS[:2]], [False])
    tables["train"].advance()
    for step in (4, 6):
        train.save_logs_and_checkpoints(global_step=step)
    # the newest --ckpt.max_num tables are kept, as OpenRLHF keeps its checkpoints
    assert sorted(os.listdir(tmp_path / "spo3_state")) == ["global_step4", "global_step6"]

    # a fresh run in the same folder (no --ckpt.load_enable) starts empty
    states = trainer("resumed", load_enable=False).init_checkpoint_states()
    assert states["global_step"] == 0 and tables["resumed"].stats()["unique_states"] == 0
    # a resumed run loads the table of the step OpenRLHF resumes from
    states = trainer("resumed", load_enable=True, resume_step=4).init_checkpoint_states()
    assert states["global_step"] == 4  # OpenRLHF's own resume state, untouched
    assert tables["resumed"].content_hash() == tables["train"].content_hash()
    assert tables["resumed"].stats()["t"] == 4
    with pytest.raises(ValueError, match="resuming 3SPO from global step 2, but .* holds no state table"):
        trainer("resumed", load_enable=True, resume_step=2).init_checkpoint_states()


def test_a_resumed_table_scores_with_this_runs_parameters(tmp_path):
    old = StateScoreActor(alpha=50.0, xi=10.0)
    old.record([[KEYS[0]]] * 3, [True, False, False])
    old.advance()
    old.save(str(tmp_path))
    new = StateScoreActor(alpha=2.0, xi=1.0)
    new.load(str(tmp_path))
    # N_total 3, N_success 1, t = 4: alpha 2 gives exp(-2 ln 4 / 3.000001); xi 1: N_fail 2 >= 1 but SR > zeta
    assert new.lookup([KEYS[0]])["score"][0] == pytest.approx(np.exp(-2.0 * np.log(4) / 3.000001), rel=1e-9)
    assert (new.table.alpha, new.table.xi, new.table.t) == (2.0, 1.0, 4)


def test_a_new_run_in_the_same_folder_starts_empty(local_ray, tmp_path):
    """Without --ckpt.load_enable a run never inherits the statistics of an earlier run in its
    folder (each run's live snapshots have a folder of their own)."""
    from types import SimpleNamespace

    from openrlhf_3spo.plugin.scores import start_state_scores
    from openrlhf_3spo.settings import Settings

    def run(name):
        spo3 = SimpleNamespace(**Settings(state_actor=name).to_dict())
        algo = SimpleNamespace(advantage=SimpleNamespace(estimator="3spo"))
        return start_state_scores(SimpleNamespace(spo3=spo3, algo=algo, ckpt=SimpleNamespace(path=str(tmp_path))))

    first = run("run-one")
    first.record([[KEYS[0], KEYS[1]]], [True])
    first.advance()
    assert first.stats()["unique_states"] == 2
    second = run("run-two")
    assert second.stats()["unique_states"] == 0 and second.stats()["t"] == 1
    assert len(os.listdir(tmp_path / "spo3_live")) == 2


def test_a_table_saved_by_two_shards_loads_into_three(local_ray, tmp_path):
    """Changing --spo3.score_shards over a checkpoint keeps every count (before: 353 of 1000 keys
    were found after going from 2 shards to 3)."""
    keys = [_key(1000 + i) for i in range(300)]
    two = StateScores.create("resave-two", num_shards=2)
    rng = np.random.default_rng(1)
    trajectories = [list(rng.choice(keys, size=20, replace=False)) for _ in range(60)]
    two.record(trajectories, [bool(w) for w in rng.random(60) < 0.3])
    two.advance()
    two.mark_tried([(keys[0], "look"), (keys[7], "go north")])
    two.save(str(tmp_path))
    three = StateScores.create("resave-three", num_shards=3)
    three.load(str(tmp_path))
    before, after = two.lookup(keys), three.lookup(keys)
    for name in ("score", "n_total"):
        np.testing.assert_array_equal(before[name], after[name])
    assert three.stats()["unique_states"] == two.stats()["unique_states"] == len(set(k for t in trajectories for k in t))
    assert three.stats()["t"] == 61 and three.current_version() == 1
    assert three.is_tried([(keys[0], "look"), (keys[7], "go north"), (keys[7], "look")]) == [True, True, False]


def test_shards_agree_on_t_after_one_lost_records(local_ray):
    scores = StateScores.create("t-shards", num_shards=2)
    scores.record([[KEYS[0]], [KEYS[1]]], [True, False])
    ray.get(scores.actors[1].load_state.remote(  # shard 1 restarted: the records it had staged are gone
        {"version": 2, "keys": [], "n_total": np.zeros(0, np.int64), "n_success": np.zeros(0, np.int64), "t": 1},
        {"version": 0, "applied": 0}, set()))
    scores.advance()
    assert ray.get([a.trajectory_counter.remote() for a in scores.actors]) == [3, 3] and scores.stats()["t"] == 3
