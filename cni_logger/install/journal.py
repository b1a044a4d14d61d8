"""The state dir: the journal of what install changed, and the lock that lets one installer run at a time.

The journal (``install.json``, mode 0600: it holds original files, which may contain credentials such
as Calico's token) is what lets uninstall restore a file byte for byte, or take out only what install
added. Besides ``launcher`` and ``configs`` it may hold ``withdrawn`` (what the failsafe took out of which
file, see ``failsafe``) and ``pending`` (a change written ahead and not yet committed, see ``transaction``).
Its objects keep their key order (an operator's entry read back from it renders as it was written).
"""

from __future__ import annotations

import fcntl
import json
import os
from typing import Any

from cni_logger.install import Refusal, atomicfile

JOURNAL_NAME = "install.json"
LOCK_NAME = "install.lock"


def load_journal(state_dir: str) -> dict[str, Any]:
    path = os.path.join(state_dir, JOURNAL_NAME)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        return {"version": 1, "launcher": None, "configs": {}}
    except (ValueError, RecursionError) as exc:
        raise Refusal(f"{path} is not valid JSON ({exc}); move it away to start afresh") from exc
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("configs"), dict):
        raise Refusal(f"{path} is not a cni-logger install journal (version 1)")
    problem = _problem(doc)
    if problem:
        raise Refusal(f"{path}: {problem}; move it away to start afresh (uninstall then removes nothing)")
    return doc


_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "created": (bool,), "original": (str, type(None)), "converted_from": (str, type(None)),
    "written_sha256": (str,), "mode": (int,), "uid": (int, type(None)), "gid": (int, type(None)),
    "entry": (dict, type(None)), "entry_index": (int, type(None)),
}


def _problem(doc: dict[str, Any]) -> str | None:
    """What in a journal the installer could not act on (it is read as written; a hand edit may break it)."""
    if not isinstance(doc.get("launcher"), str | None):
        return "'launcher' is not a path"
    withdrawn = doc.get("withdrawn", {})
    if not isinstance(withdrawn, dict) or not all(
            isinstance(w, dict) and isinstance(w.get("original"), str) and isinstance(w.get("entries", []), list)
            for w in withdrawn.values()):
        return "'withdrawn' is not what the failsafe writes"
    pending = doc.get("pending")
    if pending is not None and not (isinstance(pending, dict) and isinstance(pending.get("steps"), list)
                                    and isinstance(pending.get("after"), dict)
                                    and all(isinstance(s, dict) and isinstance(s.get("path"), str)
                                            for s in pending["steps"])):
        return "'pending' is not a change written ahead by install"
    for path, record in doc["configs"].items():
        if not isinstance(record, dict):
            return f"the record for {path!r} is not an object"
        for key, types in _RECORD_TYPES.items():
            if key in record and not isinstance(record[key], types):
                return f"the record for {path!r} has an invalid {key!r}"
        try:
            (record.get("original") or "").encode("utf-8")
        except UnicodeEncodeError:
            return f"the record for {path!r} holds an original that is not UTF-8 text"
    return None


def save_journal(state_dir: str, journal: dict[str, Any]) -> None:
    path = os.path.join(state_dir, JOURNAL_NAME)
    if not journal["configs"] and not any(journal.get(key) for key in ("launcher", "withdrawn", "pending")):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    # Not sort_keys: an operator's entry read back from here must render in its own key order, or an
    # unchanged chain would be rewritten on every pass.
    atomicfile.write_atomic(path, (json.dumps(journal, indent=2) + "\n").encode("utf-8"), 0o600)


class StateLock:
    """An flock on ``<state dir>/install.lock``: one installer or uninstaller at a time on a node."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.fd = -1

    def __enter__(self) -> StateLock:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.fd = os.open(os.path.join(self.state_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the lock
