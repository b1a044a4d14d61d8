"""``cni-logger install`` / ``cni-logger uninstall``: put the logger into a node's CNI setup, and take it out.

Install writes the plugin launcher into the CNI bin dir (first: CRI-O skips a whole network whose
plugins are not all present), then appends ``{"type": "logger", ...}`` to the plugin list of the
network the runtime uses. Appended *last*, because on ADD the runtime runs the list in order, so the
logger receives the final result of every plugin before it as ``prevResult`` (and on DEL, run in
reverse, it records the teardown before anything is removed).

Which file is "the network the runtime uses" follows the runtimes' own rule: list ``*.conf``,
``*.conflist`` and ``*.json`` (Podman: only ``*.conflist``; rkt: only ``*.conf``), sort the names
lexicographically, take the first valid network config (rkt has no plugin lists: there the logger
gets a network file of its own). containerd stops loading *every* network at
the first file it cannot parse, where CRI-O and kubelet skip it; the installer skips such a file like
CRI-O but says loudly that containerd will not start pods while it is there. A file the installer
cannot rewrite without guessing (duplicate keys, which Go's decoder accepts silently, or a config the
logger itself could not run in) is refused: a broken conflist stops containerd from loading any
network, so nothing is written unless the result is certain to be valid.

Every write goes to a temporary name that no runtime loads (``.<name>.cni-logger-tmp``: it does not
end in ``.conf``, ``.conflist`` or ``.json``), is fsynced, takes the original's mode and owner, and is
renamed over the target; nothing is written when the content would not change. What install changed
is kept in a journal (``<state dir>/install.json``, mode 0600: it holds the original file, which may
contain credentials such as Calico's token), so that uninstall restores the original byte for byte
when nobody else changed the file since, and otherwise removes only ``type: logger`` entries.

``--watch`` keeps running for a DaemonSet: agents such as Calico rewrite their file on restart (and
non-atomically, so a parse error is retried before it is believed), so the entry is re-inserted
whenever it disappears; SIGTERM removes the entry again but leaves the launcher, which pods set up with
the logger still need for DEL. This module is not on the plugin path.
"""

from __future__ import annotations

import os
import sys

from cni_logger.install import atomicfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

LOGGER_TYPE = "logger"
"""The CNI ``type`` of the plugin, and so the executable's name in the bin dir."""
DEFAULT_LOG_FILE = "/var/log/cni/cni-logger.log"
DEFAULT_STATE_DIR = "/var/lib/cni-logger"
JOURNAL_NAME = "install.json"
LOCK_NAME = "install.lock"
TMP_SUFFIX = atomicfile.TMP_SUFFIX
"""Suffix of temporary files: no runtime loads a name that does not end in .conf/.conflist/.json."""
DEFAULT_CNI_VERSION = "0.4.0"
"""cniVersion for a wrapped ``.conf`` that had none, and for rkt's logger network (what Podman writes)."""
RKT_NETWORK = "cni-logger"
RKT_FILE = "zz-cni-logger.conf"
"""rkt sets up networks in file-name order and names interfaces eth0, eth1... by position: sorting last
keeps the user's own networks' interface names unchanged under ``--net=all``."""
CILIUM_FILE = "05-cilium.conflist"
CILIUM_TYPE = "cilium-cni"
LAUNCHER_MARKER = b"# cni-logger CNI plugin launcher"
"""The header comment ``launcher.render`` writes: uninstall removes a bin-dir file only if it has it."""

SETTLE_SECONDS = 1.0
SETTLE_ATTEMPTS = 3
"""A file that does not parse is read again this many times, this far apart, before it is believed:
Calico writes its conflist in place (truncate, then write), so a reader can catch it half-written."""
FIGHT_WINDOW_SECONDS = 60.0
FIGHT_REWRITES = 3
MAX_BACKOFF_SECONDS = 300.0
"""--watch: having to re-insert the entry FIGHT_REWRITES times within the window means another agent keeps
reverting it (Cilium with cni.exclusive=true): the wait then doubles, up to MAX_BACKOFF_SECONDS, rather
than the two rewriting the file (and the runtime reloading it) in a loop."""


class Runtime:
    """A runtime's rules: which files it loads, its default dirs, and whether it chains plugins.

    (Plain classes here, not dataclasses: ``cli.tool`` imports this module for every subcommand, and
    dataclasses costs more start-up time than the rest of the module.)
    """

    __slots__ = ("bin_dir", "chaining", "conf_dir", "extensions", "name")

    def __init__(self, name: str, extensions: tuple[str, ...], conf_dir: str, bin_dir: str, chaining: bool) -> None:
        self.name, self.extensions, self.chaining = name, extensions, chaining
        self.conf_dir, self.bin_dir = conf_dir, bin_dir


RUNTIMES: dict[str, Runtime] = {
    "containerd": Runtime("containerd", (".conf", ".conflist", ".json"), "/etc/cni/net.d", "/opt/cni/bin", True),
    "crio": Runtime("crio", (".conf", ".conflist", ".json"), "/etc/cni/net.d", "/opt/cni/bin", True),
    "podman": Runtime("podman", (".conflist",), "/etc/cni/net.d", "/opt/cni/bin", True),
    "rkt": Runtime("rkt", (".conf",), "/etc/rkt/net.d", "/usr/lib/rkt/plugins/net", False),
}


class Refusal(Exception):
    """A config the installer will not touch, or a step that failed; the message says why and what to do."""


class Options:
    """What to install where (the command line, resolved)."""

    __slots__ = ("bin_dir", "conf_dir", "conf_file", "dry_run", "entry", "network", "runtime", "state_dir")

    def __init__(self, *, runtime: Runtime, conf_dir: str, bin_dir: str, conf_file: str | None, network: str | None,
                 entry: dict[str, Any], state_dir: str, dry_run: bool = False) -> None:
        self.runtime, self.conf_dir, self.bin_dir = runtime, conf_dir, bin_dir
        self.conf_file, self.network, self.entry = conf_file, network, entry
        self.state_dir, self.dry_run = state_dir, dry_run


# ---------------------------------------------------------------------------------------------------------
# Reading configs


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _Duplicate(f"duplicate key {key!r}")
        doc[key] = value
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN/Infinity, Go's decoder does not


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} is out of range")
    return value


def parse_json(data: bytes) -> Any:
    """JSON as Go's decoder reads it (strict UTF-8, no NaN); duplicate keys raise ``_Duplicate``."""
    import json

    return json.loads(data.decode("utf-8"), object_pairs_hook=_pairs, parse_constant=_no_constant,
                      parse_float=_finite)


class ConfigFile:
    """One file in the conf dir, read once: its bytes, its parse, and why it is not usable (if it is not).

    ``unparsable``: the bytes are not JSON (or not UTF-8), possibly a half-written file. ``ambiguous``: valid
    for a runtime but not rewritable without guessing (duplicate keys, a symlink).
    """

    __slots__ = ("ambiguous", "data", "doc", "path", "problem", "stat", "unparsable")

    def __init__(self, path: str, data: bytes, stat: os.stat_result, *, problem: str | None = None,
                 ambiguous: bool = False) -> None:
        self.path, self.data, self.stat = path, data, stat
        self.doc: Any = None
        self.problem, self.ambiguous = problem, ambiguous
        self.unparsable = False

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def is_list(self) -> bool:
        return self.path.endswith(".conflist")

    @property
    def network(self) -> str | None:
        name = self.doc.get("name") if isinstance(self.doc, dict) else None
        return name if isinstance(name, str) else None

    def changed(self) -> bool:
        """Whether the file on disk is no longer what was read (another writer got in between)."""
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            return True
        return (now.st_ino, now.st_size, now.st_mtime_ns) != (
            self.stat.st_ino, self.stat.st_size, self.stat.st_mtime_ns)


def _valid_plugin(plugin: Any) -> bool:
    return isinstance(plugin, dict) and isinstance(plugin.get("type"), str) and bool(plugin["type"])


def read_config(path: str) -> ConfigFile:
    """Read and classify one file the way libcni would load it (by extension: list or single config)."""
    import stat

    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return ConfigFile(path, b"", st, problem="is a symbolic link (not modified: write its target instead)",
                          ambiguous=True)
    if not stat.S_ISREG(st.st_mode):
        return ConfigFile(path, b"", st, problem="is not a regular file")
    with open(path, "rb") as f:
        data = f.read()
    cfg = ConfigFile(path, data, st)
    try:
        cfg.doc = parse_json(data)
    except _Duplicate as exc:
        cfg.problem, cfg.ambiguous = f"has a {exc} (Go keeps the last one; refusing to guess)", True
        return cfg
    except (ValueError, RecursionError) as exc:
        cfg.problem, cfg.unparsable = f"is not valid JSON ({exc})", True
        return cfg
    doc = cfg.doc
    if not isinstance(doc, dict):
        cfg.problem = "is not a JSON object"
    elif "cniVersion" in doc and not isinstance(doc["cniVersion"], str):
        cfg.problem = "has a cniVersion that is not a string"
    elif cfg.is_list:
        plugins = doc.get("plugins")
        if not isinstance(plugins, list):
            cfg.problem = "is a .conflist without a 'plugins' list"
        elif not plugins:
            cfg.problem = "is a .conflist with no plugins"
        elif not all(_valid_plugin(p) for p in plugins):
            cfg.problem = "has a plugin entry that is not an object with a 'type'"
        elif not isinstance(doc.get("name"), str) or not doc["name"]:
            cfg.problem = "is a .conflist without a network 'name'"
    elif not _valid_plugin(doc):
        cfg.problem = "has no 'type' (a plugin list must be named .conflist)"
    return cfg


def scan(conf_dir: str, runtime: Runtime) -> list[ConfigFile]:
    """The files the runtime would consider, in its (lexicographic) order."""
    try:
        names = sorted(os.listdir(conf_dir))
    except FileNotFoundError:
        raise Refusal(f"{conf_dir} does not exist (is this the runtime's CNI conf dir? see --conf-dir)") from None
    found = []
    for name in names:
        if not name.endswith(runtime.extensions):
            continue
        path = os.path.join(conf_dir, name)
        if os.path.isdir(path):
            continue  # libcni's ConfFiles skips directories
        try:
            found.append(read_config(path))
        except FileNotFoundError:
            continue  # removed while we listed: the runtime will not see it either
        except OSError as exc:
            raise Refusal(f"cannot read {path}: {exc}") from exc
    return found


# ---------------------------------------------------------------------------------------------------------
# Choosing the file


def _network_name_problem(name: Any) -> str | None:
    """The logger refuses a network name that libcni's pkg/utils would refuse: say so before installing."""
    if not isinstance(name, str) or not name:
        return "has no network name"
    first = name[0].isascii() and name[0].isalnum()
    rest = all(c.isascii() and (c.isalnum() or c in "_.-") for c in name)
    return None if first and rest else f"has a network name the plugin refuses: {name!r}"


def _conf_path(opts: Options, name: str) -> str:
    return os.path.abspath(os.path.join(opts.conf_dir, name))


def choose(opts: Options, files: list[ConfigFile], notes: list[str]) -> ConfigFile:
    """The file to insert into. Raises Refusal when there is none or the choice would be a guess."""
    runtime = opts.runtime
    if opts.conf_file:
        path = _conf_path(opts, opts.conf_file)
        if not path.endswith(runtime.extensions):
            raise Refusal(f"{path}: {runtime.name} loads only {', '.join(runtime.extensions)} files")
        for cfg in files:
            if cfg.path == path:
                if cfg.problem:
                    raise Refusal(f"{path} {cfg.problem}")
                return cfg
        try:
            cfg = read_config(path)
        except FileNotFoundError:
            raise Refusal(f"{path} does not exist") from None
        if cfg.problem:
            raise Refusal(f"{path} {cfg.problem}")
        return cfg

    if opts.network:
        matches = [c for c in files if not c.problem and c.network == opts.network]
        if len(matches) > 1:
            raise Refusal(f"network {opts.network!r} is defined by {len(matches)} files "
                          f"({', '.join(c.name for c in matches)}); the runtime uses the first, which may not be "
                          "the one meant: name it with --conf-file")
        if not matches:
            raise Refusal(f"no valid file in {opts.conf_dir} defines network {opts.network!r}")
        _note_skipped(opts, [c for c in files if c.problem and c.path < matches[0].path], notes)
        return matches[0]

    valid = [c for c in files if not c.problem]
    if runtime.name == "podman":
        if len(valid) != 1:
            names = ", ".join(f"{c.name} ({c.network})" for c in valid) or "none"
            raise Refusal(f"Podman uses each .conflist as a separate named network and has no primary one "
                          f"(found: {names}; its default network 'podman' may exist only in memory): "
                          "name the network's file with --conf-file or its name with --network")
        return valid[0]
    for cfg in files:
        if cfg.ambiguous:
            raise Refusal(f"{cfg.path} {cfg.problem}; it sorts before any usable config, so the runtime "
                          "may use it: fix it or name the file with --conf-file")
        if not cfg.problem:
            _note_skipped(opts, [c for c in files if c.problem and c.path < cfg.path], notes)
            return cfg
    _note_skipped(opts, files, notes)
    raise Refusal(f"no valid network config in {opts.conf_dir} (has the network provider started?)")


def _note_skipped(opts: Options, skipped: list[ConfigFile], notes: list[str]) -> None:
    for cfg in skipped:
        consequence = ""
        if opts.runtime.name == "containerd":
            consequence = ("; WARNING: containerd stops at the first file it cannot load and then loads NO "
                           "network at all (pods cannot start) until it is fixed or removed")
        notes.append(f"warning: skipped {cfg.path}: it {cfg.problem}{consequence}")


_known_broken: dict[str, tuple[int, int, int]] = {}
"""Files already read again SETTLE_ATTEMPTS times and still unparsable, with their (inode, size, mtime):
believed at once while they stay the same, so a lasting broken file costs the settle time only once."""


def settled_choice(opts: Options, notes: list[str]) -> ConfigFile:
    """``choose`` over a scan, re-reading while a file that sorts before the choice does not parse (it may
    be half-written) or the named file does not parse, so a torn write is never mistaken for the truth."""
    import time

    def unsettled(files: list[ConfigFile], before: str | None) -> list[ConfigFile]:
        return [c for c in files if c.unparsable and (before is None or c.path < before)
                and _known_broken.get(c.path) != (c.stat.st_ino, c.stat.st_size, c.stat.st_mtime_ns)]

    for attempt in range(SETTLE_ATTEMPTS + 1):
        files = scan(opts.conf_dir, opts.runtime)
        last = attempt == SETTLE_ATTEMPTS
        if last:
            _known_broken.update({c.path: (c.stat.st_ino, c.stat.st_size, c.stat.st_mtime_ns)
                                  for c in unsettled(files, None)})
        attempt_notes: list[str] = []
        try:
            target = choose(opts, files, attempt_notes)
        except Refusal:
            if last or not unsettled(files, None):
                raise
        else:
            if last or not unsettled(files, target.path):
                notes.extend(attempt_notes)
                return target
        time.sleep(SETTLE_SECONDS)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------------------
# Building the new content


def logger_entry(log_file: str, *, fail_on_log_error: bool = False, max_size: float | None = None,
                 max_backups: int | None = None, max_age: float | None = None, compress: bool = False,
                 rotation: str | None = None, capabilities: list[str] | None = None) -> dict[str, Any]:
    """The logger's plugin entry with only the options given (the plugin's defaults apply to the rest)."""
    entry: dict[str, Any] = {"type": LOGGER_TYPE}
    if capabilities:
        entry["capabilities"] = dict.fromkeys(capabilities, True)
    entry["logFile"] = log_file
    if fail_on_log_error:
        entry["failOnLogError"] = True
    options: dict[str, Any] = {}
    for key, value in (("maxSize", max_size), ("maxBackups", max_backups), ("maxAge", max_age),
                       ("compress", True if compress else None), ("rotation", rotation)):
        if value is not None:
            options[key] = value
    if options:
        entry["logOptions"] = options
    from cni_logger import settings

    problems = settings.load(entry).problems
    if problems:
        raise Refusal("; ".join(problems))
    return entry


def _style(data: bytes | None) -> tuple[int | str | None, tuple[str, str] | None, bool]:
    """Indent, separators and final newline of an existing file, so a rewrite changes only what changed."""
    if not data:
        return 2, None, True
    text = data.decode("utf-8")
    newline = text.endswith("\n")
    lines = text.strip("\n").split("\n")
    if len(lines) == 1:
        compact = '":' in text and '": ' not in text
        return None, ((",", ":") if compact else (", ", ": ")), newline
    for line in lines[1:]:
        body = line.lstrip(" \t")
        if body and len(body) < len(line):
            pad = line[: len(line) - len(body)]
            return ("\t" if pad.startswith("\t") else len(pad)), None, newline
    return 2, None, newline


def render(doc: dict[str, Any], like: bytes | None) -> bytes:
    """``doc`` as JSON in the style of ``like`` (the file it replaces)."""
    import json

    indent, separators, newline = _style(like)
    text = json.dumps(doc, indent=indent, separators=separators, ensure_ascii=False)
    return (text + ("\n" if newline else "")).encode("utf-8")


def with_logger(doc: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """A copy of the list ``doc`` with every logger entry replaced by ``entry``, placed last."""
    new = dict(doc)
    new["plugins"] = [p for p in doc["plugins"] if p.get("type") != LOGGER_TYPE] + [entry]
    return new


def without_logger(doc: dict[str, Any]) -> dict[str, Any]:
    new = dict(doc)
    new["plugins"] = [p for p in doc["plugins"] if not (isinstance(p, dict) and p.get("type") == LOGGER_TYPE)]
    return new


def wrap(doc: dict[str, Any]) -> dict[str, Any]:
    """A single-plugin config as the equivalent list, as libcni's ConfListFromConf does it."""
    inner = {k: v for k, v in doc.items() if k not in ("cniVersion", "name")}
    return {"cniVersion": doc.get("cniVersion") or DEFAULT_CNI_VERSION, "name": doc.get("name"), "plugins": [inner]}


def _has_logger(data: bytes) -> bool:
    try:
        doc = parse_json(data)
    except ValueError:
        return False
    plugins = doc.get("plugins") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and doc.get("type") == LOGGER_TYPE:
        return True
    return isinstance(plugins, list) and any(isinstance(p, dict) and p.get("type") == LOGGER_TYPE for p in plugins)


def _check_runnable(cfg: ConfigFile, doc: dict[str, Any]) -> None:
    """Refuse a network the logger could not run in: the whole ADD would fail."""
    from cni_logger import skel

    version = doc.get("cniVersion") or "0.1.0"
    if version not in skel.SUPPORTED_VERSIONS:
        raise Refusal(f"{cfg.path} has cniVersion {version!r}; the logger supports "
                      f"{', '.join(skel.SUPPORTED_VERSIONS)}")
    problem = _network_name_problem(doc.get("name"))
    if problem:
        raise Refusal(f"{cfg.path} {problem}")


# ---------------------------------------------------------------------------------------------------------
# Plans: what would be written or removed, shown by --dry-run, applied otherwise


class Write:
    """Replace ``path`` (``old``: its content now, None if it does not exist) with ``data``.

    ``expect`` is the file as read: the write is abandoned if it changed since (another agent wrote it
    meanwhile). ``launcher``: written by ``launcher.write`` (the same text, rendered for this interpreter).
    """

    __slots__ = ("data", "expect", "gid", "launcher", "mode", "old", "path", "uid")

    def __init__(self, path: str, data: bytes, old: bytes | None, mode: int, uid: int | None, gid: int | None,
                 expect: ConfigFile | None = None, *, launcher: bool = False) -> None:
        self.path, self.data, self.old, self.mode, self.uid, self.gid = path, data, old, mode, uid, gid
        self.expect, self.launcher = expect, launcher


class Remove:
    __slots__ = ("expect", "old", "path")

    def __init__(self, path: str, old: bytes, expect: ConfigFile | None = None) -> None:
        self.path, self.old, self.expect = path, old, expect


class Plan:
    """The steps in order, and the journal to save after them (None: leave it as it is)."""

    __slots__ = ("journal", "steps")

    def __init__(self, journal: dict[str, Any] | None = None) -> None:
        self.steps: list[Write | Remove] = []
        self.journal = journal

    def diff(self) -> str:
        import difflib

        out: list[str] = []
        for step in self.steps:
            old = (step.old or b"").decode("utf-8", "replace").splitlines(keepends=True)
            new = step.data.decode("utf-8", "replace").splitlines(keepends=True) if isinstance(step, Write) else []
            before = step.path if step.old is not None else "/dev/null"
            after = step.path if isinstance(step, Write) else "/dev/null"
            lines = list(difflib.unified_diff(old, new, before, after))
            out.extend(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
        return "".join(out)


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def write_atomic(path: str, data: bytes, mode: int, uid: int | None = None, gid: int | None = None,
                 expect: ConfigFile | None = None) -> None:
    """``atomicfile.write_atomic``, abandoning the rename if ``expect``'s file changed since it was read."""

    def unchanged() -> None:
        if expect is not None and expect.changed():
            raise Refusal(f"{path} changed while it was being updated (another agent wrote it); will retry")

    atomicfile.write_atomic(path, data, mode, uid, gid, before_replace=unchanged)


def apply(plan: Plan, state_dir: str) -> None:
    for step in plan.steps:
        if isinstance(step, Write):
            os.makedirs(os.path.dirname(step.path), mode=0o755, exist_ok=True)  # e.g. rkt's plugin dir
        if isinstance(step, Write) and step.launcher:
            from cni_logger.install import launcher

            launcher.write(step.path)
        elif isinstance(step, Write):
            write_atomic(step.path, step.data, step.mode, step.uid, step.gid, step.expect)
        else:
            if step.expect is not None and step.expect.changed():
                raise Refusal(f"{step.path} changed while it was being updated; will retry")
            os.unlink(step.path)
            atomicfile.fsync_dir(os.path.dirname(step.path) or ".")
    if plan.journal is not None:
        save_journal(state_dir, plan.journal)


# ---------------------------------------------------------------------------------------------------------
# The journal


def load_journal(state_dir: str) -> dict[str, Any]:
    import json

    path = os.path.join(state_dir, JOURNAL_NAME)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        return {"version": 1, "launcher": None, "configs": {}}
    except ValueError as exc:
        raise Refusal(f"{path} is not valid JSON ({exc}); move it away to start afresh") from exc
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("configs"), dict):
        raise Refusal(f"{path} is not a cni-logger install journal (version 1)")
    return doc


def save_journal(state_dir: str, journal: dict[str, Any]) -> None:
    import json

    path = os.path.join(state_dir, JOURNAL_NAME)
    if not journal["configs"] and not journal.get("launcher"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    write_atomic(path, (json.dumps(journal, indent=2, sort_keys=True) + "\n").encode("utf-8"), 0o600)


class _StateLock:
    """An flock on ``<state dir>/install.lock``: one installer or uninstaller at a time on a node."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.fd = -1

    def __enter__(self) -> _StateLock:
        import fcntl

        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.fd = os.open(os.path.join(self.state_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the lock


# ---------------------------------------------------------------------------------------------------------
# Install


def _launcher_plan(bin_dir: str) -> tuple[str, str | None]:
    """The launcher's path and its text when it must be (re)written, None when it is already current."""
    from cni_logger.install import launcher

    target = os.path.join(bin_dir, LOGGER_TYPE)
    text = launcher.render(sys.executable, launcher.import_paths())
    try:
        with open(target, "rb") as f:
            current = f.read()
    except FileNotFoundError:
        return target, text
    if os.path.islink(target) or not _is_our_launcher(current):
        raise Refusal(f"{target} exists and is not a cni-logger launcher; remove it or choose another --bin-dir")
    return target, (None if current == text.encode("utf-8") and os.access(target, os.X_OK) else text)


def _is_our_launcher(data: bytes) -> bool:
    return data.startswith(b"#!") and LAUNCHER_MARKER in data[:1024]


def _record(journal: dict[str, Any], path: str, cfg: ConfigFile | None) -> dict[str, Any]:
    """The journal record for writing ``path`` whose current content is ``cfg`` (None: does not exist).

    The original is kept from an earlier install as long as the file is still exactly what we wrote; a
    file someone else rewrote becomes the new original, unless it still holds a logger entry after we
    had installed into it (then no one can tell which parts are ours, and uninstall only removes
    logger entries).
    """
    old = journal["configs"].get(path)
    if cfg is None:
        return {"created": True, "original": None, "converted_from": None}
    if old is not None and old.get("written_sha256") == _sha256(cfg.data):
        return dict(old)
    if old is not None and _has_logger(cfg.data):
        return {"created": False, "original": None, "converted_from": None}
    return {"created": False, "original": cfg.data.decode("utf-8"), "converted_from": None,
            "mode": cfg.stat.st_mode & 0o7777, "uid": cfg.stat.st_uid, "gid": cfg.stat.st_gid}


def plan_install(opts: Options, journal: dict[str, Any], notes: list[str]) -> Plan:
    """Everything install would change, in order: launcher first (CRI-O skips a network whose plugins are
    not all installed), then the config; the journal updated to match."""
    import copy

    plan = Plan()
    new_journal = copy.deepcopy(journal)
    launcher_path, launcher_text = _launcher_plan(opts.bin_dir)
    if launcher_text is not None:
        old = None
        if os.path.exists(launcher_path):
            with open(launcher_path, "rb") as f:
                old = f.read()
        plan.steps.append(Write(launcher_path, launcher_text.encode("utf-8"), old, 0o755, os.geteuid(), os.getegid(),
                                launcher=True))
    new_journal["launcher"] = launcher_path

    if opts.runtime.chaining:
        _plan_chain(opts, new_journal, plan, notes)
    else:
        _plan_rkt(opts, new_journal, plan, notes)
    if plan.steps or new_journal != journal:
        plan.journal = new_journal
    return plan


def _plan_chain(opts: Options, journal: dict[str, Any], plan: Plan, notes: list[str]) -> None:
    target = settled_choice(opts, notes)
    doc = target.doc
    if target.name == CILIUM_FILE or any(p.get("type") == CILIUM_TYPE for p in doc.get("plugins", [doc])):
        notes.append(f"warning: {target.path} is Cilium's: unless Cilium runs with cni.exclusive=false "
                     "(Helm value), it rewrites the file and removes the logger entry")
    if target.is_list:
        _check_runnable(target, doc)
        new = render(with_logger(doc, opts.entry), target.data)
        if new == target.data:
            return
        record = _record(journal, target.path, target)
        plan.steps.append(Write(target.path, new, target.data, target.stat.st_mode & 0o7777, target.stat.st_uid,
                                target.stat.st_gid, target))
    else:
        wrapped = wrap(doc)
        _check_runnable(target, wrapped)
        destination = os.path.splitext(target.path)[0] + ".conflist"
        previous = journal["configs"].get(destination)
        existing = None
        if os.path.lexists(destination):
            if not previous or previous.get("converted_from") != target.path:
                raise Refusal(f"{target.path} would become {destination}, which exists already; "
                              "resolve which one is meant (or name one with --conf-file)")
            existing = read_config(destination)
        new = render(with_logger(wrapped, opts.entry), target.data)
        record = {"created": False, "converted_from": target.path, "original": target.data.decode("utf-8"),
                  "mode": target.stat.st_mode & 0o7777, "uid": target.stat.st_uid, "gid": target.stat.st_gid}
        notes.append(f"{target.path} is a single-plugin config: it becomes the plugin list {destination}")
        plan.steps.append(Write(destination, new, existing.data if existing else None, record["mode"],
                                record["uid"], record["gid"], existing))
        plan.steps.append(Remove(target.path, target.data, target))
        target = ConfigFile(destination, new, target.stat)
    record["written_sha256"] = _sha256(new)
    journal["configs"][target.path] = record


def _plan_rkt(opts: Options, journal: dict[str, Any], plan: Plan, notes: list[str]) -> None:
    """rkt has no plugin lists: each .conf is a separate network. The logger gets one of its own."""
    if opts.network:
        raise Refusal("--network does not apply to rkt: the logger's network is always "
                      f"{RKT_NETWORK!r} (use --conf-file to name its file)")
    path = _conf_path(opts, opts.conf_file or RKT_FILE)
    if not path.endswith(".conf"):
        raise Refusal(f"{path}: rkt loads only .conf files")
    current = None
    for cfg in scan(opts.conf_dir, opts.runtime) if os.path.isdir(opts.conf_dir) else []:
        if cfg.path == path:
            current = cfg
        elif cfg.unparsable or cfg.ambiguous:
            notes.append(f"warning: {cfg.path} {cfg.problem}: rkt refuses to set up any network while it is there")
        elif cfg.network == RKT_NETWORK:
            raise Refusal(f"{cfg.path} already defines network {RKT_NETWORK!r}; remove it or install into it "
                          "with --conf-file")
    if current is None and os.path.lexists(path):
        current = read_config(path)
    version = DEFAULT_CNI_VERSION
    if current is not None:
        if current.problem or current.doc.get("type") != LOGGER_TYPE:
            raise Refusal(f"{path} exists and is not a logger network ({current.problem or 'another type'})")
        version = current.doc.get("cniVersion") or version
    new = render({"cniVersion": version, "name": RKT_NETWORK, **opts.entry}, current.data if current else None)
    if current is not None and new == current.data:
        return
    record = _record(journal, path, current)
    record["written_sha256"] = _sha256(new)
    journal["configs"][path] = record
    mode, uid, gid = (current.stat.st_mode & 0o7777, current.stat.st_uid, current.stat.st_gid) if current else (
        0o644, os.geteuid(), os.getegid())
    plan.steps.append(Write(path, new, current.data if current else None, mode, uid, gid, current))
    notes.append(f"rkt: the logger is network {RKT_NETWORK!r} in {path}; pods use it with "
                 f"--net=default,{RKT_NETWORK} (or --net=all)")


def install_once(opts: Options, notes: list[str], out: Callable[[str], object] | None = None) -> bool:
    """One install pass; True when something was (or, with dry_run, would be) changed."""
    try:
        return _install_once(opts, notes, out or sys.stdout.write)
    except (OSError, RuntimeError) as exc:  # RuntimeError: launcher.import_paths() found no package
        raise Refusal(str(exc)) from exc


def _install_once(opts: Options, notes: list[str], out: Callable[[str], object]) -> bool:
    if opts.dry_run:
        plan = plan_install(opts, load_journal(opts.state_dir), notes)
        if plan.steps:
            out(plan.diff())
        else:
            notes.append("nothing to change")
        return bool(plan.steps)
    # Plan without the lock first: a pass with nothing to change (every --watch check, normally) or a
    # refusal then writes nothing at all, not even the state dir.
    plan = plan_install(opts, load_journal(opts.state_dir), notes)
    if plan.steps or plan.journal is not None:
        with _StateLock(opts.state_dir):
            plan = plan_install(opts, load_journal(opts.state_dir), [])
            apply(plan, opts.state_dir)
    for step in plan.steps:
        notes.append(f"{'wrote' if isinstance(step, Write) else 'removed'} {step.path}")
    if not plan.steps:
        notes.append("already installed: nothing to change")
    return bool(plan.steps)


# ---------------------------------------------------------------------------------------------------------
# Uninstall


def plan_uninstall(state_dir: str, keep_launcher: bool, notes: list[str]) -> Plan:
    """Undo what the journal records, touching only what install added (see module docstring)."""
    import copy

    journal = load_journal(state_dir)
    new_journal = copy.deepcopy(journal)
    plan = Plan(journal=new_journal)
    for path, record in journal["configs"].items():
        _plan_restore(path, record, plan, notes)
        del new_journal["configs"][path]
    launcher_path = journal.get("launcher")
    if launcher_path and not keep_launcher:
        try:
            with open(launcher_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = None
        if data is not None and _is_our_launcher(data) and not os.path.islink(launcher_path):
            plan.steps.append(Remove(launcher_path, data))
        elif data is not None:
            notes.append(f"warning: {launcher_path} is not a cni-logger launcher any more: left in place")
        new_journal["launcher"] = None
    return plan


def _plan_restore(path: str, record: dict[str, Any], plan: Plan, notes: list[str]) -> None:
    try:
        current = read_config(path)
    except FileNotFoundError:
        notes.append(f"{path} no longer exists: nothing to undo there")
        return
    unchanged = _sha256(current.data) == record.get("written_sha256")
    if record.get("created"):
        if current.doc and isinstance(current.doc, dict) and current.doc.get("type") == LOGGER_TYPE:
            plan.steps.append(Remove(path, current.data, current))
        else:
            notes.append(f"warning: {path} is no longer the logger network install wrote: left in place")
        return
    original = record.get("original")
    if unchanged and original is not None:
        data = original.encode("utf-8")
        mode, uid, gid = record.get("mode", 0o644), record.get("uid"), record.get("gid")
        source = record.get("converted_from")
        if source:
            if os.path.lexists(source):
                notes.append(f"{source} was written again by someone else: removing only {path}")
            else:
                plan.steps.append(Write(source, data, None, mode, uid, gid))
            plan.steps.append(Remove(path, current.data, current))
        else:
            plan.steps.append(Write(path, data, current.data, mode, uid, gid, current))
        return
    # Changed by someone else since: take out only logger entries.
    if current.problem or not current.is_list:
        notes.append(f"warning: {path} {current.problem or 'is no longer a plugin list'}: left as it is")
        return
    new_doc = without_logger(current.doc)
    if new_doc == current.doc:
        return
    if not new_doc["plugins"]:
        notes.append(f"warning: {path} would have no plugins left without the logger: left as it is")
        return
    mode = current.stat.st_mode & 0o7777
    plan.steps.append(Write(path, render(new_doc, current.data), current.data, mode, current.stat.st_uid,
                            current.stat.st_gid, current))


def uninstall_once(state_dir: str, keep_launcher: bool, dry_run: bool, notes: list[str],
                   out: Callable[[str], object] | None = None) -> None:
    try:
        _uninstall_once(state_dir, keep_launcher, dry_run, notes, out or sys.stdout.write)
    except OSError as exc:
        raise Refusal(str(exc)) from exc


def _uninstall_once(state_dir: str, keep_launcher: bool, dry_run: bool, notes: list[str],
                    out: Callable[[str], object]) -> None:
    if dry_run:
        plan = plan_uninstall(state_dir, keep_launcher, notes)
        out(plan.diff())
        return
    with _StateLock(state_dir):
        plan = plan_uninstall(state_dir, keep_launcher, notes)
        apply(plan, state_dir)
    for step in plan.steps:
        notes.append(f"{'wrote' if isinstance(step, Write) else 'removed'} {step.path}")
    if not plan.steps:
        notes.append("nothing recorded to undo")


# ---------------------------------------------------------------------------------------------------------
# --watch


def _touch(path: str | None, ready: bool) -> None:
    if not path:
        return
    if ready:
        with open(path, "a"):
            pass
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def watch(opts: Options, interval: float, ready_file: str | None,
          emit: Callable[[list[str]], None]) -> int:
    """Install, then re-check every ``interval`` seconds until SIGTERM/SIGINT, then take the entry out.

    Signals are blocked and collected with ``sigtimedwait`` between passes, so a pass (and its rename)
    is never interrupted halfway. Identical consecutive reports are printed once. On exit the launcher
    stays: CRI-O runs DEL with the config cached at ADD, so pods created while the logger was in the
    chain still execute it on teardown, and libcni fails a DEL whose plugin is missing.
    """
    import signal
    import time

    signals = {signal.SIGTERM, signal.SIGINT}
    for signum in signals:
        # A handler of our own, because as a container's PID 1 a signal left at SIG_DFL is discarded by the
        # kernel; blocked, the signal stays pending for sigtimedwait and the handler never actually runs.
        signal.signal(signum, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    _touch(ready_file, False)
    last: list[str] = []
    rewrites: list[float] = []
    first = True
    wait = interval
    while True:
        notes: list[str] = []
        ok = False
        try:
            changed = install_once(opts, notes)
            ok = True
        except Refusal as exc:
            notes.append(f"not installed: {exc} (retrying every {interval:g}s)")
            changed = False
        now = time.monotonic()
        if changed and not first:
            rewrites = [t for t in rewrites if now - t < FIGHT_WINDOW_SECONDS] + [now]
            if len(rewrites) >= FIGHT_REWRITES:
                wait = min(wait * 2, MAX_BACKOFF_SECONDS)
                notes.append(f"warning: the entry had to be put back {len(rewrites)} times within "
                             f"{FIGHT_WINDOW_SECONDS:g}s: another agent keeps removing it (Cilium with "
                             f"cni.exclusive=true?); next check in {wait:g}s")
        elif ok and not changed:
            wait = interval
        first = first and not ok
        report = [n for n in notes if not n.startswith("already installed")]
        if report and report != last:
            emit(report)
        last = report
        _touch(ready_file, ok)
        if signal.sigtimedwait(signals, wait) is not None:
            break
    _touch(ready_file, False)
    notes = []
    try:
        uninstall_once(opts.state_dir, keep_launcher=True, dry_run=False, notes=notes)
        status = 0
    except Refusal as exc:
        notes.append(f"uninstall: {exc}")
        status = 1
    emit(notes)
    return status


# ---------------------------------------------------------------------------------------------------------
# Command line


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``cni-logger install ...`` and ``cni-logger uninstall ...``."""
    install = commands.add_parser(
        "install", help="install the plugin and add it to the node's network config",
        description="Write the launcher into the CNI bin dir and append the logger to the primary network's "
                    "plugin list (the first valid config in the runtime's order), atomically and idempotently.")
    install.add_argument("--runtime", choices=sorted(RUNTIMES), default="containerd",
                         help="whose rules pick the file: containerd, crio (first valid .conf/.conflist/.json), "
                              "podman (a named .conflist), rkt (a separate logger network) [containerd]")
    install.add_argument("--conf-dir", help="CNI config dir [/etc/cni/net.d; rkt: /etc/rkt/net.d]")
    install.add_argument("--bin-dir", help="CNI plugin dir [/opt/cni/bin; rkt: /usr/lib/rkt/plugins/net]")
    install.add_argument("--conf-file", help="insert into this file (name in --conf-dir, or a path) instead of "
                                             f"the primary one; rkt: the logger network's file [{RKT_FILE}]")
    install.add_argument("--network", help="insert into the network of this name (CRI-O's cni_default_network)")
    install.add_argument("--log-file", default=DEFAULT_LOG_FILE, help=f"audit log path [{DEFAULT_LOG_FILE}]")
    install.add_argument("--fail-on-log-error", action="store_true", help="strict audit: failOnLogError true")
    install.add_argument("--max-size", type=_number, metavar="MB", help="logOptions.maxSize")
    install.add_argument("--max-backups", type=int, metavar="N", help="logOptions.maxBackups")
    install.add_argument("--max-age", type=_number, metavar="DAYS", help="logOptions.maxAge")
    install.add_argument("--compress", action="store_true", help="logOptions.compress true")
    install.add_argument("--rotation", choices=("size", "external"), help="logOptions.rotation")
    install.add_argument("--capabilities", metavar="LIST",
                         help="comma-separated capabilities to receive, e.g. portMappings,bandwidth")
    install.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                         help=f"where the install journal is kept [{DEFAULT_STATE_DIR}]")
    install.add_argument("--dry-run", action="store_true", help="print a unified diff, write nothing")
    install.add_argument("--watch", action="store_true",
                         help="keep running: re-insert when the file is rewritten; uninstall on SIGTERM")
    install.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                         help="--watch: seconds between checks [5]")
    install.add_argument("--ready-file", help="--watch: exists while the logger is in place (readiness probe)")
    install.set_defaults(run=_run_install)

    uninstall = commands.add_parser(
        "uninstall", help="undo what install recorded",
        description="Remove what install added, as recorded in its journal: restore each file byte for byte "
                    "if nobody changed it since, else remove only the logger entries; then the launcher.")
    uninstall.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=f"[{DEFAULT_STATE_DIR}]")
    uninstall.add_argument("--keep-launcher", action="store_true",
                           help="leave the plugin executable (pods set up with it may still need it for DEL)")
    uninstall.add_argument("--dry-run", action="store_true", help="print a unified diff, write nothing")
    uninstall.set_defaults(run=_run_uninstall)


def _emitter(command: str) -> Callable[[list[str]], None]:
    def emit(notes: list[str]) -> None:
        for note in notes:
            sys.stderr.write(f"cni-logger {command}: {note}\n")
        sys.stderr.flush()

    return emit


def _run_install(args: argparse.Namespace) -> int:
    emit = _emitter("install")
    runtime = RUNTIMES[args.runtime]
    try:
        if args.watch and args.dry_run:
            raise Refusal("--watch and --dry-run exclude each other")
        if args.interval <= 0:
            raise Refusal("--interval must be > 0")
        capabilities = [c.strip() for c in (args.capabilities or "").split(",") if c.strip()]
        entry = logger_entry(args.log_file, fail_on_log_error=args.fail_on_log_error, max_size=args.max_size,
                             max_backups=args.max_backups, max_age=args.max_age, compress=args.compress,
                             rotation=args.rotation, capabilities=capabilities)
    except Refusal as exc:
        emit([f"refused: {exc}"])
        return 1
    opts = Options(runtime=runtime, conf_dir=os.path.abspath(args.conf_dir or runtime.conf_dir),
                   bin_dir=os.path.abspath(args.bin_dir or runtime.bin_dir), conf_file=args.conf_file,
                   network=args.network, entry=entry, state_dir=os.path.abspath(args.state_dir),
                   dry_run=args.dry_run)
    if args.watch:
        return watch(opts, args.interval, args.ready_file, emit)
    notes: list[str] = []
    try:
        install_once(opts, notes)
    except Refusal as exc:
        emit([*notes, f"refused: {exc}"])
        return 1
    emit(notes)
    return 0


def _run_uninstall(args: argparse.Namespace) -> int:
    emit = _emitter("uninstall")
    notes: list[str] = []
    try:
        uninstall_once(os.path.abspath(args.state_dir), args.keep_launcher, args.dry_run, notes)
    except Refusal as exc:
        emit([*notes, f"refused: {exc}"])
        return 1
    emit(notes)
    return 0
