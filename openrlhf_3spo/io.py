"""Atomic file writes: a crash leaves the previous file, never a half-written one."""

import json
import os
import tempfile


def atomic_write(path, write):
    """Calls `write(binary_file)` on a temporary file beside `path`, syncs it, then renames it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"cannot write {path}: it is a folder")
    parent = directory
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {path}: {parent} is a file, not a folder")
    os.makedirs(directory, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    except OSError as error:
        raise ValueError(f"cannot write {path}: {error.strerror}") from None
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; the file gets what open() would give it
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_jsonl(path, rows):
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
