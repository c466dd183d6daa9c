"""Snapshots of a StateTable on disk: one compact .npz file, written atomically.

A crash at any moment leaves the previous snapshot readable (write to a temporary file, fsync,
rename). Keys (128-bit digests) are stored as 16 raw bytes; the zip container's CRCs catch
corruption and truncation, which load reports as an error, never as an empty table.
"""

import io
import json
import os
import zipfile

import numpy as np

from openrlhf_3spo.algo import StateTable
from openrlhf_3spo.algo.table import STATE_DICT_VERSION
from openrlhf_3spo.io import atomic_write

FORMAT_VERSION = 1
FILE_NAME = "state_table.npz"


def _digests_to_array(digests):
    # uint8 rows, not numpy's "S16", which drops trailing zero bytes
    return np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 16)


def _array_to_digests(array):
    raw = array.tobytes()
    return [raw[i : i + 16] for i in range(0, len(raw), 16)]


def save_snapshot(directory, table: StateTable, meta=None, tried=()):
    """Writes directory/state_table.npz; `meta` (JSON-able) and `tried` (16-byte digests) ride along."""
    state = table.state_dict()
    arrays = {"n_total": state["n_total"], "n_success": state["n_success"]}
    arrays["keys"] = _digests_to_array([bytes.fromhex("".join(state["keys"]))])
    arrays["tried"] = _digests_to_array(sorted(tried))
    header = {
        "format_version": FORMAT_VERSION,
        "t": state["t"],
        "table": {"alpha": table.alpha, "xi": table.xi, "zeta": table.zeta, "eps": table.eps},
        "meta": meta or {},
    }
    arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)

    path = os.path.join(directory, FILE_NAME)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    for name in os.listdir(directory):  # temporaries of saves that were killed
        if name.startswith(".tmp-") and name.endswith(FILE_NAME):
            os.unlink(os.path.join(directory, name))
    return path


def load_snapshot(directory):
    """-> (StateTable, meta, tried digests). Raises ValueError naming the file for anything unreadable."""
    path = os.path.join(directory, FILE_NAME)
    if not os.path.exists(path):
        raise ValueError(f"no state-table snapshot at {path}")
    try:
        with open(path, "rb") as f:
            data = f.read()
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with npz:
            arrays = {name: npz[name] for name in npz.files}
        missing = {"header", "keys", "tried", "n_total", "n_success"} - set(arrays)
        if missing:
            raise ValueError(f"it lacks the arrays {sorted(missing)}")
        header = json.loads(arrays["header"].tobytes().decode("utf-8"))
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(f"state-table snapshot {path} is corrupt or truncated ({error!r})") from None
    if not isinstance(header, dict) or header.get("format_version") != FORMAT_VERSION:
        version = header.get("format_version") if isinstance(header, dict) else None
        raise ValueError(
            f"state-table snapshot {path} has format version {version!r}; this openrlhf-3spo reads version {FORMAT_VERSION}"
        )
    try:
        for name in ("keys", "tried"):
            if arrays[name].ndim != 2 or arrays[name].shape[1] != 16 or arrays[name].dtype != np.uint8:
                raise ValueError(f"{name} must be rows of 16 bytes, got {arrays[name].dtype} {arrays[name].shape}")
        for name in ("n_total", "n_success"):
            if arrays[name].ndim != 1 or not np.issubdtype(arrays[name].dtype, np.integer):
                raise ValueError(f"{name} must be a 1-D integer array, got {arrays[name].dtype} {arrays[name].shape}")
        if not isinstance(header.get("table"), dict) or not isinstance(header.get("t"), int):
            raise ValueError("its header lacks the table parameters or t")
        meta = header.get("meta", {})
        if not isinstance(meta, dict):
            raise ValueError(f"its header's meta must be a JSON object, got {meta!r}")
        table = StateTable(**header["table"])
        table.load_state_dict(
            {
                "version": STATE_DICT_VERSION,
                "keys": [d.hex() for d in _array_to_digests(arrays["keys"])],
                "n_total": arrays["n_total"],
                "n_success": arrays["n_success"],
                "t": header["t"],
            }
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"state-table snapshot {path} is inconsistent ({error})") from None
    return table, meta, set(_array_to_digests(arrays["tried"]))
