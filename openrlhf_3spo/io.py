"""Atomic file writes: a crash leaves the previous file, never a half-written one."""

import json
import os
import tempfile


def atomic_write_text(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def atomic_write_jsonl(path, rows):
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
