"""State-table snapshots: round trips, crash safety under SIGKILL, and corrupt files as clear errors."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from openrlhf_3spo.algo import StateTable
from openrlhf_3spo.state.snapshot import FILE_NAME, load_snapshot, save_snapshot


def _digest(i):
    return hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest()


def _table(n_trajectories=50, keys_per=5, alpha=50.0):
    table = StateTable(alpha=alpha)
    keys = ["00" * 16, "ff" * 15 + "00"] + [_digest(i) for i in range(200)]  # zero bytes at both ends
    rng = random.Random(0)
    table.record([rng.sample(keys, keys_per) for _ in range(n_trajectories)], [rng.random() < 0.4 for _ in range(n_trajectories)])
    return table, keys


def test_round_trip_keeps_everything(tmp_path):
    table, keys = _table(alpha=7.0)
    tried = {b"\x00" * 16, bytes(range(16)), b"\xff" * 15 + b"\x00"}
    save_snapshot(tmp_path, table, {"version": 4}, tried)
    loaded, meta, loaded_tried = load_snapshot(tmp_path)
    assert meta == {"version": 4} and loaded_tried == tried
    assert loaded.t == table.t and loaded.alpha == 7.0
    assert loaded.state_dict()["keys"] == table.state_dict()["keys"]
    np.testing.assert_array_equal(loaded.scores(keys), table.scores(keys))
    np.testing.assert_array_equal(loaded.n_success(keys), table.n_success(keys))


def test_text_keys_are_found_after_a_round_trip(tmp_path):
    table = StateTable()
    keys = ["You see a fridge 1.", "ünïcode 🙂", "ABCDEF" * 6]
    table.record([keys], [True])
    save_snapshot(tmp_path, table)
    assert load_snapshot(tmp_path)[0].n_total(keys).tolist() == [1, 1, 1]


def test_empty_table_round_trips(tmp_path):
    save_snapshot(tmp_path, StateTable())
    table, meta, tried = load_snapshot(tmp_path)
    assert len(table) == 0 and table.t == 1 and tried == set()


def test_corrupt_truncated_missing_and_foreign_files_are_errors(tmp_path):
    table, _ = _table()
    path = save_snapshot(tmp_path, table)
    data = open(path, "rb").read()
    with pytest.raises(ValueError, match="no state-table snapshot"):
        load_snapshot(tmp_path / "elsewhere")
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_snapshot(tmp_path)
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF  # inside the counts
    open(path, "wb").write(bytes(flipped))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_snapshot(tmp_path)
    open(path, "wb").write(b"")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_snapshot(tmp_path)


def test_other_format_version_is_refused(tmp_path, monkeypatch):
    import openrlhf_3spo.state.snapshot as snapshot

    monkeypatch.setattr(snapshot, "FORMAT_VERSION", 99)
    save_snapshot(tmp_path, StateTable())
    monkeypatch.setattr(snapshot, "FORMAT_VERSION", 1)
    with pytest.raises(ValueError, match="format version 99.*reads version 1"):
        load_snapshot(tmp_path)


def test_sigkill_during_saves_leaves_a_complete_snapshot(tmp_path):
    """A writer saves ever-larger tables in a loop; killed at random moments, the file on disk is
    always one complete snapshot, never a mix or an empty table."""
    writer = textwrap.dedent(
        f"""
        import hashlib, sys
        from openrlhf_3spo.algo import StateTable
        from openrlhf_3spo.state.snapshot import save_snapshot
        table = StateTable()
        for round in range(10**6):
            keys = [hashlib.blake2b(f"{{round}}-{{i}}".encode(), digest_size=16).hexdigest() for i in range(20000)]
            table.record([keys], [round % 2 == 0])
            save_snapshot({str(tmp_path)!r}, table, {{"round": round}})
            print(round, flush=True)
        """
    )
    rng = random.Random(0)
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one snapshot is complete
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        table, meta, _ = load_snapshot(tmp_path)
        assert table.t == meta["round"] + 2 and len(table) == 20000 * (meta["round"] + 1)
    save_snapshot(tmp_path, table)  # the next save clears the temporaries killed saves left
    assert os.listdir(tmp_path) == [FILE_NAME]


def _rewrite(tmp_path, **changes):
    """The saved snapshot with some arrays replaced (or removed, with None)."""
    import json

    save_snapshot(str(tmp_path), _table(5)[0], tried={bytes(16)})
    path = tmp_path / FILE_NAME
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for name, value in changes.items():
        if name == "header" and not isinstance(value, np.ndarray):
            value = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
        arrays[name] = value
    with open(path, "wb") as f:
        np.savez(f, **{k: v for k, v in arrays.items() if v is not None})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"header": [1, 2]}, "format version None"),
        ({"header": {"format_version": 1}}, "header lacks the table parameters"),
        ({"header": {"format_version": 1, "t": 3, "table": {"alpha": "x"}}}, "inconsistent"),
        ({"keys": np.zeros((3, 8), np.uint8)}, "keys must be rows of 16 bytes"),
        ({"n_total": np.zeros((5, 2), np.int64)}, "n_total must be a 1-D integer array"),
        ({"n_success": np.zeros(5)}, "n_success must be a 1-D integer array"),
        ({"tried": None}, r"lacks the arrays \[.tried.\]"),
    ],
)
def test_malformed_snapshots_give_one_clear_error(tmp_path, changes, message):
    _rewrite(tmp_path, **changes)
    with pytest.raises(ValueError, match=message) as error:
        load_snapshot(str(tmp_path))
    assert str(tmp_path / FILE_NAME) in str(error.value)


def test_an_npy_file_in_place_of_the_snapshot_is_a_clear_error(tmp_path):
    with open(tmp_path / FILE_NAME, "wb") as f:
        np.save(f, np.arange(4))
    with pytest.raises(ValueError, match="corrupt or truncated.*not an .npz archive"):
        load_snapshot(str(tmp_path))
