"""Replace a file the way CNI runtimes need it replaced: all at once, or not at all.

Runtimes watch their config directory and execute plugins from their bin directory at any moment.
A half-written config stops containerd from loading any network; a half-written plugin is executed
("text file busy" retries aside). So a file is written under a temporary name in the same directory
— one that no runtime loads (it does not end in ``.conf``, ``.conflist`` or ``.json``) — fsynced,
given its mode and owner, and renamed over the target; then the directory is fsynced.
"""

from __future__ import annotations

import os
from collections.abc import Callable

TMP_SUFFIX = ".cni-logger-tmp"


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_path(path: str) -> str:
    """Where ``write_atomic`` writes ``path``'s new content before renaming it into place."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}{TMP_SUFFIX}")


def write_atomic(path: str, data: bytes, mode: int, uid: int | None = None, gid: int | None = None,
                 before_replace: Callable[[], None] | None = None) -> None:
    """Write ``data`` to ``path`` through ``.<name>.cni-logger-tmp``; ``before_replace`` may veto by raising.

    ``before_replace`` runs once the temporary file is complete (closed, with its mode and owner): it
    may examine or execute ``temporary_path(path)``. Callers serialise writers of the same path (the
    installer holds its state-dir lock), so a leftover temporary file can only be a killed run's, and
    is removed first.
    """
    directory = os.path.dirname(path)
    tmp = temporary_path(path)
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            st = os.fstat(fd)
            if (uid is not None and uid != st.st_uid) or (gid is not None and gid != st.st_gid):
                os.fchown(fd, st.st_uid if uid is None else uid, st.st_gid if gid is None else gid)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory or ".")
