"""Shared machinery for the reliability suite.

* ``audit_log`` reads a log file together with all its rotated backups (plain and ``.gz``) and accounts
  for every event: missing, duplicated, unexpected, torn (damaged lines, including a cut-short event
  with the next event glued on), glued events never rewritten, and merged (two complete events on one
  line). ``test_checker.py`` proves that it reports each of those against deliberately broken sinks.
* ``run_jobs`` runs many plugin processes at once, optionally SIGKILLing some of them mid-flight.
* ``run_proc`` runs one plugin process with the knobs the fault tests need (user, umask, cwd, raw
  stdin file, byte-valued environment) and measures how long it took.
* ``run_in_process`` calls ``skel.run`` in this process, for inputs ``execve`` cannot carry
  (NUL bytes and megabytes in the environment) and for monkeypatched sinks.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.harness.plugin import Run, cni_env, plugin_executable

EVENT_START = b'{"@timestamp":'
"""Every event line starts with this (a JSON string cannot contain it unescaped)."""
TMP_MARK = ".gz.tmp."
MAX_EVENT_BYTES = 16 * 1024

PREV_RESULT: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "rlbr0", "mac": "c6:60:67:4b:5d:76"},
                   {"name": "veth24e0f2cc", "mac": "62:dc:de:d3:77:14"},
                   {"name": "eth0", "mac": "ca:4d:f4:32:50:b1", "sandbox": "/run/netns/rel-ctr"}],
    "ips": [{"interface": 2, "address": "10.250.77.2/24", "gateway": "10.250.77.1"}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.250.77.1"}],
    "dns": {},
}


def net_config(log_file: str | Path | None = None, version: str = "1.0.0", *, prev: bool = True,
               **extra: Any) -> dict[str, Any]:
    """A logger network config (1.0.0, with a bridge-like prevResult) writing to ``log_file``."""
    conf: dict[str, Any] = {"cniVersion": version, "name": "relnet", "type": "logger"}
    if log_file is not None:
        conf["logFile"] = str(log_file)
    if prev:
        conf["prevResult"] = {**PREV_RESULT, "cniVersion": version}
    conf.update(extra)
    return conf


class KnownBug(AssertionError):
    """Raised where a test reproduces a known bug; ``xfail(strict=True, raises=KnownBug)`` expects it, so
    any other failure in the same test (its set-up going wrong) still fails the run."""


# -- running the plugin ---------------------------------------------------------------------------


@dataclass
class Timed(Run):
    """A finished plugin process and how long it ran (seconds)."""

    elapsed: float = 0.0


UNPRIVILEGED = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
def run_proc(command: str | None, config: Any = None, *, stdin: bytes | None = None,
             stdin_file: IO[bytes] | None = None, env: Mapping[str, str | bytes] | None = None,
             as_nobody: bool = False, umask: int = -1, cwd: str | Path | None = None,
             timeout: float = 10.0) -> Timed:
    """Run the installed plugin once and time it; ``timeout`` bounds the run (TimeoutExpired fails the test)."""
    if env is None:
        env = cni_env(command) if command is not None else {"PATH": "/usr/bin:/bin"}
    argv = [*(UNPRIVILEGED if as_nobody else []), plugin_executable()]
    data = stdin if stdin is not None else (b"" if config is None else json.dumps(config).encode())
    started = time.monotonic()
    if stdin_file is not None:
        proc = subprocess.run(argv, stdin=stdin_file, env=env, capture_output=True, timeout=timeout,
                              umask=umask, cwd=cwd, check=False)
    else:
        proc = subprocess.run(argv, input=data, env=env, capture_output=True, timeout=timeout,
                              umask=umask, cwd=cwd, check=False)
    elapsed = time.monotonic() - started
    return Timed(proc.returncode, proc.stdout, proc.stderr,
                 {k: v if isinstance(v, str) else os.fsdecode(v) for k, v in env.items()}, elapsed)


def run_in_process(env: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
    """``skel.run`` in this process (stderr goes to fd 2: capture it with ``capfd``)."""
    from cni_logger import skel
    from cni_logger.plugin import LoggerPlugin

    with tempfile.TemporaryFile() as src, tempfile.TemporaryFile() as out:
        src.write(stdin)
        src.flush()
        src.seek(0)
        rc = skel.run(LoggerPlugin(env), env, src.fileno(), out.fileno())
        out.seek(0)
        return rc, out.read()


@dataclass
class Job:
    """One plugin process of a load run.

    ``kill_at``: when to SIGKILL it (if still running), as a fraction of the median run time of the
    processes that finished before it started, so kills land all through a process's life (start-up,
    parsing, rendering, the append and rotation) whatever the machine's speed.
    """

    key: str
    command: str
    env: dict[str, str]
    stdin: bytes
    kill_at: float | None = None
    rc: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    elapsed: float = 0.0

    @property
    def killed(self) -> bool:
        return self.rc == -signal.SIGKILL


@dataclass
class LoadStats:
    wall_seconds: float
    processes: int
    killed: int
    max_in_flight: int


def run_jobs(jobs: list[Job], parallel: int = 16, timeout: float = 30.0) -> LoadStats:
    """Run every job as a real plugin process, ``parallel`` at a time; fills rc/stdout/stderr in place."""
    lock = threading.Lock()
    in_flight = [0, 0]  # current, maximum
    durations: list[float] = []

    def one(job: Job) -> None:
        with lock:
            typical = sorted(durations)[len(durations) // 2] if durations else 0.3
        started = time.monotonic()
        proc = subprocess.Popen([plugin_executable()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=job.env)
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
        try:
            if job.kill_at is not None:
                assert proc.stdin is not None
                try:
                    proc.stdin.write(job.stdin)
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
                proc.stdin = None  # delivered: communicate() must only read
                time.sleep(max(0.0, job.kill_at * typical - (time.monotonic() - started)))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                job.stdout, job.stderr = proc.communicate(timeout=timeout)
            else:
                job.stdout, job.stderr = proc.communicate(job.stdin, timeout=timeout)
        finally:
            if proc.poll() is None:  # a hung plugin: kill it so the run ends; rc says what happened
                proc.kill()
                proc.communicate()
            with lock:
                in_flight[0] -= 1
        job.rc = proc.returncode
        job.elapsed = time.monotonic() - started
        if not job.killed:
            with lock:
                durations.append(job.elapsed)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, jobs))
    return LoadStats(time.monotonic() - started, len(jobs), sum(j.killed for j in jobs), in_flight[1])


def mixed_jobs(tag: str, count: int, config: dict[str, Any], *, kill_fraction: float = 0.0,
               kill_window: tuple[float, float] = (0.0, 1.2), seed: int = 0) -> list[Job]:
    """``count`` invocations cycling ADD / CHECK / DEL, each with its own container id ``<tag>-<n>``."""
    rng = random.Random(seed)
    data = json.dumps(config).encode()
    jobs = []
    for n in range(count):
        command = ("ADD", "CHECK", "DEL")[n % 3]
        key = f"{tag}-{n:05d}"
        kill_at = rng.uniform(*kill_window) if rng.random() < kill_fraction else None
        jobs.append(Job(key, command, cni_env(command, CNI_CONTAINERID=key), data, kill_at))
    return jobs


# -- reading and auditing the log -----------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    file: str
    number: int
    raw: bytes
    terminated: bool = True


def log_files(live: Path) -> list[Path]:
    """The live file (if present) and its rotated backups, plain and ``.gz``, oldest backups first."""
    prefix = live.name + "."
    backups = sorted(p for p in live.parent.iterdir()  # regular files only: never block on a FIFO
                     if p.name.startswith(prefix) and TMP_MARK not in p.name and p.is_file())
    return [*backups, *([live] if live.exists() else [])]


def stray_temporaries(live: Path) -> list[Path]:
    return sorted(p for p in live.parent.iterdir() if p.name.startswith(live.name + ".") and TMP_MARK in p.name)


def read_lines(path: Path) -> list[LogLine]:
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    if not data:
        return []
    chunks = data.split(b"\n")
    tail = chunks.pop()  # b"" when the file ends with a newline; otherwise an unterminated line
    lines = [LogLine(path.name, i + 1, raw) for i, raw in enumerate(chunks)]
    if tail:
        lines.append(LogLine(path.name, len(chunks) + 1, tail, terminated=False))
    return lines


def event_key(event: Mapping[str, Any]) -> str:
    cni = event.get("cni")
    return str(cni.get("container_id", "")) if isinstance(cni, dict) else ""


@dataclass
class Audit:
    """Every line of a log set, classified, and the events counted against what was expected."""

    files: list[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    torn: list[LogLine] = field(default_factory=list)      # damaged lines: not one complete JSON event
    glued: list[str] = field(default_factory=list)         # keys of complete events glued to a torn head
    merged: list[LogLine] = field(default_factory=list)    # two complete events on one line
    empty: list[LogLine] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    wrong_command: list[str] = field(default_factory=list)
    unrepaired: list[str] = field(default_factory=list)    # glued events with no intact copy

    @property
    def counts(self) -> Counter[str]:
        return Counter(event_key(e) for e in self.events)

    def problems(self, *, allowed_torn: int = 0, allowed_empty: int = 0) -> list[str]:
        found = []
        if self.missing:
            found.append(f"{len(self.missing)} events missing, e.g. {self.missing[:5]}")
        if self.duplicated:
            found.append(f"{len(self.duplicated)} events duplicated, e.g. {list(self.duplicated.items())[:5]}")
        if self.unexpected:
            found.append(f"{len(self.unexpected)} unexpected events, e.g. {self.unexpected[:5]}")
        if self.unrepaired:
            found.append(f"events glued to a torn line and never rewritten: {self.unrepaired[:5]}")
        if self.wrong_command:
            found.append(f"events with the wrong command: {self.wrong_command[:5]}")
        if self.merged:
            found.append(f"{len(self.merged)} merged lines, e.g. {_show(self.merged[0])}")
        if len(self.torn) > allowed_torn:
            found.append(f"{len(self.torn)} torn lines (allowed {allowed_torn}), e.g. {_show(self.torn[0])}")
        if len(self.empty) > allowed_empty:
            found.append(f"{len(self.empty)} empty lines (allowed {allowed_empty})")
        return found


def _show(line: LogLine) -> str:
    return f"{line.file}:{line.number} {line.raw[:80]!r}...({len(line.raw)} bytes)"


def _event(raw: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("event"), dict) else None


def classify(lines: Iterable[LogLine], audit: Audit) -> None:
    """Sort lines into events, torn lines, glued lines and merged lines.

    A write cut short (disk full, writer killed mid-write) leaves a line without its newline; the next
    writer's event lands glued to it, and that writer then writes its event again on a line of its
    own (filesink.RotatingFile.append). So a line that is a cut-short head followed by one complete
    event is one *torn* line (its glued event is not counted: the intact copy must be elsewhere),
    while a line holding two *complete* events is *merged*: two events lost to a reader.
    """
    for line in lines:
        if not line.raw:
            audit.empty.append(line)
            continue
        doc = _event(line.raw) if line.terminated else None
        if doc is not None:
            audit.events.append(doc)
            continue
        cut = line.raw.rfind(EVENT_START)
        if cut > 0:
            head, tail = line.raw[:cut], line.raw[cut:]
            glued = _event(tail)
            if _event(head) is not None or any(_event(p) for p in _pieces(head)):
                audit.merged.append(line)
                continue
            if glued is not None:
                audit.glued.append(event_key(glued))
        audit.torn.append(line)


def _pieces(head: bytes) -> list[bytes]:
    """The event-shaped pieces of a damaged head (complete events hiding inside it mean a merge)."""
    starts = [i for i in range(len(head)) if head.startswith(EVENT_START, i)]
    return [head[a:b] for a, b in zip(starts, [*starts[1:], len(head)], strict=True)]


def audit_log(live: Path, expected: Mapping[str, str] | None = None,
              maybe: Iterable[str] = ()) -> Audit:
    """Account for every event in ``live`` and its backups.

    ``expected`` maps each key (container id) that must be present exactly once to its command;
    keys in ``maybe`` may be present at most once (invocations that were killed). With ``expected``
    None only the line structure is checked.
    """
    files = log_files(live)
    audit = Audit([p.name for p in files])
    for path in files:
        classify(read_lines(path), audit)
    counts = audit.counts
    audit.duplicated = {k: n for k, n in counts.items() if n > 1}
    audit.unrepaired = sorted(k for k in audit.glued if counts[k] == 0)
    if expected is not None:
        optional = set(maybe)
        audit.missing = sorted(k for k in expected if counts[k] == 0)
        audit.unexpected = sorted(k for k in counts if k not in expected and k not in optional)
        for event in audit.events:
            key = event_key(event)
            if key in expected and event["cni"].get("command") != expected[key]:
                audit.wrong_command.append(key)
    return audit


# -- waiting, file system helpers -----------------------------------------------------------------


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    state = {}
    for path in directory.rglob("*"):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        state[str(path.relative_to(directory))] = (st.st_size, st.st_mtime_ns)
    return state


def wait_until_quiet(live: Path, timeout: float = 30.0, settle: float = 1.0) -> float:
    """Wait for detached compression children: no ``.gz.tmp.*`` and no change for ``settle`` seconds."""
    started = time.monotonic()
    last = snapshot(live.parent)
    quiet_since = time.monotonic()
    while time.monotonic() - started < timeout:
        time.sleep(0.1)
        now = snapshot(live.parent)
        if now != last or stray_temporaries(live):
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            return time.monotonic() - started
    raise AssertionError(f"log directory still changing after {timeout} s: {sorted(last)}")


def mode(path: Path) -> int:
    return path.lstat().st_mode & 0o7777


def lines_of(data: bytes) -> list[bytes]:
    """Lines as a JSON-lines reader sees them: split on b"\\n" only."""
    chunks = data.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    return chunks


def json_lines(data: bytes) -> list[Any]:
    """Every line parsed as JSON (fails the test on the first line that is not)."""
    docs = []
    for number, raw in enumerate(lines_of(data), 1):
        try:
            docs.append(json.loads(raw))
        except ValueError as exc:
            raise AssertionError(f"line {number} is not JSON: {raw[:200]!r}") from exc
    return docs


def leaked(secrets: Iterable[str], *blobs: bytes) -> list[str]:
    """The secret values found anywhere in ``blobs`` (raw bytes, also JSON-escaped)."""
    found = []
    for secret in secrets:
        forms = {secret.encode(), json.dumps(secret)[1:-1].encode(),
                 json.dumps(secret, ensure_ascii=False)[1:-1].encode()}
        if any(form in blob for form in forms for blob in blobs):
            found.append(secret)
    return found


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
