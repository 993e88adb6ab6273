"""Write files so that nobody ever sees half of one.

A file is written under a temporary name in the same folder, then renamed onto its
real name (``os.replace``, atomic on one filesystem): a crash or an error leaves either
the old file or none, never a truncated one, and the temporary file is removed.
"""
import contextlib
import json
import os


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; write there. When the ``with`` block
    ends normally it is renamed to ``path``; on an exception it is removed."""
    path = os.fspath(path)
    head, tail = os.path.split(path)
    tmp = os.path.join(head, f".{tail}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_text(path, json.dumps(obj, indent=1))
