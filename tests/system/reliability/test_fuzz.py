"""A fuzz run over stdin and the environment through the real process.

Each case is derived from a seeded generator: a logger config (every logger setting, valid or not, with
the log file pointing at a sandbox holding a directory, a FIFO and a symlink where files are expected)
mutated structurally or byte by byte, and an environment whose CNI_* variables are kept, dropped,
replaced by random text, by invalid UTF-8 or by long values. Every case must produce a spec answer
(one JSON document or nothing, agreeing with the exit status), no traceback, within the time limit;
at the end every line of every log file must be one complete event and nothing may have been written
outside the sandbox's log directory.

``--run-slow`` runs ``CNI_LOGGER_FUZZ_COUNT`` cases (default 2000); the default suite runs a 60-case
smoke. ``CNI_LOGGER_FUZZ_SEED`` replays a run (the seed is printed and in every failure message).
"""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.harness.reliability import PREV_RESULT, Timed, audit_log, lines_of, run_proc, wait_until_quiet

COMMANDS = ["ADD", "CHECK", "DEL", "GC", "STATUS", "VERSION"]
VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", "", "0.0.9", "2.0.0", "1.0", None, 1]
CODES = {1, 4, 5, 6, 7, 11, 50}
LOG_NAMES = ["logs/audit.log", "logs/deeper/new/audit.log", "logs/rotating.log"]
TRAPS = ["traps/dir.log", "traps/fifo.log", "traps/link.log", "traps/dangling.log"]
ALPHABET = (
    "abcXYZ019 _-./:;=@\"\\'{}[],"
    "\n\r\t\x00\x01\x07\x0b\x1b\x7f\x85\u00e9\u2028\u2029\ufeff\ufffd\U0001f600"
)


def text(rng: random.Random, limit: int = 24) -> str:
    if rng.random() < 0.05:
        return rng.choice(ALPHABET) * rng.randint(1000, 40000)
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, limit)))


def junk(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.45:
        return rng.choice([None, True, False, 0, -1, 2**70, 1.5e308, -0.0, text(rng), "\ud800", ""])
    if roll < 0.7:
        return [junk(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.75:
        return json.loads("[" * 200 + "]" * 200)
    return {text(rng, 8): junk(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def prev_result(rng: random.Random, version: str) -> Any:
    roll = rng.random()
    if roll < 0.5:
        return {**PREV_RESULT, "cniVersion": version if isinstance(version, str) else "1.0.0"}
    if roll < 0.6:
        return {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.2.3/24", "gateway": "10.1.2.1"}, "dns": {}}
    if roll < 0.7:
        return {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": rng.choice(["10.0.0.2/24", "bogus", ""]),
                                                 "interface": rng.choice([0, 9, -1, "x"])}]}
    return junk(rng)


def config(rng: random.Random, sandbox: Path) -> dict[str, Any]:
    version = rng.choice(VERSIONS)
    conf: dict[str, Any] = {"type": "logger"}
    if version is not None:
        conf["cniVersion"] = version
    if rng.random() < 0.9:
        conf["name"] = rng.choice(["fuzznet", "n-1.2_3", "", "bad name", "../up", text(rng, 8)])
    if rng.random() < 0.8:
        conf["prevResult"] = prev_result(rng, str(version))
    roll = rng.random()
    if roll < 0.55:
        conf["logFile"] = str(sandbox / rng.choice(LOG_NAMES))
    elif roll < 0.7:
        conf["logFile"] = str(sandbox / rng.choice(TRAPS))
    elif roll < 0.8:
        conf["logFile"] = rng.choice(["relative.log", "./x.log", f"{sandbox}/logs/", "", 42, None, ["/x"],
                                      f"{sandbox}/logs/a\x00b.log"])
    if rng.random() < 0.6:
        conf["logOptions"] = {
            "maxSize": rng.choice([0.002, 0.004, 1, 0, -1, "1", None, 1e-9, 10**9]),
            "maxBackups": rng.choice([0, 1, 3, -1, 2.5, True, "2"]),
            "maxAge": rng.choice([0, 1, -1, "x"]),
            "compress": rng.choice([False, True, "yes"]),
            "rotation": rng.choice(["size", "external", "daily", 3]),
        } if rng.random() < 0.8 else junk(rng)
    for key in ("failOnLogError", "logToStderr", "recordStatus"):
        if rng.random() < 0.3:
            conf[key] = rng.choice([True, False, "true", 1, None])
    if rng.random() < 0.2:
        conf["redactKeys"] = rng.choice([["customer"], [], [""], "token", [1], junk(rng)])
    for _ in range(rng.randint(0, 3)):  # structural mutation: arbitrary extra keys and values
        conf[text(rng, 10)] = junk(rng)
    if rng.random() < 0.1 and conf:
        conf.pop(rng.choice(sorted(conf, key=str)))
    return conf


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if not buf:
            break
        at = rng.randrange(len(buf))
        if op < 0.4:
            buf[at] = rng.randrange(256)
        elif op < 0.6:
            del buf[at:at + rng.randint(1, 40)]
        elif op < 0.8:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            buf[at:at] = buf[at:at + rng.randint(1, 200)]
    return bytes(buf)


def environment(rng: random.Random) -> dict[str, str | bytes]:
    env: dict[str, str | bytes] = {"PATH": "/usr/bin:/bin"}
    command = rng.choice(COMMANDS) if rng.random() < 0.9 else text(rng, 8).replace("\x00", "")
    env["CNI_COMMAND"] = command
    defaults = {"CNI_CONTAINERID": "fuzz-ctr", "CNI_NETNS": "/run/netns/fuzz", "CNI_IFNAME": "eth0",
                "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod",
                "TRACEPARENT": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    for name, default in defaults.items():
        roll = rng.random()
        if roll < 0.6:
            env[name] = default
        elif roll < 0.75:
            continue
        elif roll < 0.9:
            value = text(rng).replace("\x00", "")
            while len(value.encode("utf-8", "surrogatepass")) > 100_000:  # execve: 128 KiB per string
                value = value[: len(value) // 2]
            env[name] = value
        else:
            env[name] = bytes(rng.randrange(1, 256) for _ in range(rng.randint(0, 30)))
    return env


def case(seed: int, n: int, sandbox: Path) -> tuple[dict[str, str | bytes], bytes]:
    rng = random.Random(f"{seed}-{n}")
    env = environment(rng)
    conf = config(rng, sandbox)
    data = json.dumps(conf, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    if rng.random() < 0.25:
        # Byte-level damage, only where it cannot invent a path outside the sandbox.
        conf.pop("logFile", None)
        data = mutate_bytes(rng, json.dumps(conf).encode())
    elif rng.random() < 0.03:
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 4096)))
    return env, data


def check(run: Timed, where: str) -> str:
    """The spec answer for one case; returns a label for the tally."""
    assert run.elapsed < 10, where
    assert b"Traceback" not in run.stderr and b"internal error" not in run.stderr, (where, run.stderr[-1500:])
    for line in lines_of(run.stderr):
        json.loads(line)
    if run.rc == 1:
        doc = run.doc
        assert isinstance(doc, dict) and set(doc) <= {"cniVersion", "code", "msg", "details"}, (where, doc)
        assert doc["code"] in CODES, (where, doc)
        return f"code {doc['code']}"
    assert run.rc == 0, (where, run.rc, run.stdout, run.stderr[-500:])
    if run.stdout.strip():
        doc = run.doc
        assert isinstance(doc, dict) and "cniVersion" in doc, (where, doc)
        return "answer"
    return "empty"


def make_sandbox(root: Path) -> Path:
    sandbox = root / "sandbox"
    (sandbox / "logs").mkdir(parents=True)
    (sandbox / "cwd").mkdir()
    traps = sandbox / "traps"
    traps.mkdir()
    (traps / "dir.log").mkdir()
    os.mkfifo(traps / "fifo.log")
    (root / "target.log").write_bytes(b"untouched\n")
    (traps / "link.log").symlink_to(root / "target.log")
    (traps / "dangling.log").symlink_to(root / "never-created.log")
    return sandbox


def fuzz(tmp_path: Path, count: int, seed: int) -> Counter[str]:
    sandbox = make_sandbox(tmp_path)
    tally: Counter[str] = Counter()

    def one(n: int) -> str:
        env, data = case(seed, n, sandbox)
        where = f"seed={seed} case={n} (CNI_LOGGER_FUZZ_SEED={seed} replays it)"
        try:
            run = run_proc(None, stdin=data, env=env, cwd=sandbox / "cwd", timeout=12)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AssertionError(f"{where}: {exc!r}") from exc
        return check(run, where)

    with ThreadPoolExecutor(max_workers=8) as pool:
        tally.update(pool.map(one, range(count)))

    # Afterwards: the traps are untouched, nothing appeared outside logs/, every log line is an event.
    traps = sandbox / "traps"
    assert (tmp_path / "target.log").read_bytes() == b"untouched\n"
    assert not (tmp_path / "never-created.log").exists()
    assert stat.S_ISFIFO((traps / "fifo.log").lstat().st_mode) and list((traps / "dir.log").iterdir()) == []
    assert sorted(p.name for p in traps.iterdir()) == ["dangling.log", "dir.log", "fifo.log", "link.log"]
    assert list((sandbox / "cwd").iterdir()) == []
    assert sorted(p.name for p in sandbox.iterdir()) == ["cwd", "logs", "traps"]
    recorded = 0
    for name in LOG_NAMES:
        live = sandbox / name
        if live.parent.exists():
            wait_until_quiet(live, settle=0.5)
            audit = audit_log(live)  # container ids repeat here: check structure, and event ids
            assert not (audit.torn or audit.merged or audit.empty or audit.unrepaired), (name, seed, audit.problems())
            ids = Counter(e["event"]["id"] for e in audit.events)
            assert not [i for i, n in ids.items() if n > 1], (name, seed)
            recorded += len(audit.events)
    tally["events in files"] = recorded
    return tally


def seed_from_env() -> int:
    return int(os.environ.get("CNI_LOGGER_FUZZ_SEED") or random.SystemRandom().randrange(2**32))


def test_fuzz_smoke(tmp_path: Path) -> None:
    seed = int(os.environ.get("CNI_LOGGER_FUZZ_SEED") or 20261128)
    tally = fuzz(tmp_path, 60, seed)
    print(f"\nFIGURES fuzz-smoke: cases=60 seed={seed} {dict(sorted(tally.items()))}")


@pytest.mark.slow
def test_fuzz_long(tmp_path: Path) -> None:
    count = int(os.environ.get("CNI_LOGGER_FUZZ_COUNT") or 2000)
    seed = seed_from_env()
    tally = fuzz(tmp_path, count, seed)
    print(f"\nFIGURES fuzz: cases={count} seed={seed} {dict(sorted(tally.items()))}")
