#!/usr/bin/env python3
"""cni-logger audit benchmark: how fast the audit subcommands answer over a large trail.

It builds a realistic node trail in a temporary directory: event lines templated from lines the
real plugin writes (ADD with a bridge result and Kubernetes arguments, CHECK, DEL with the cached
result, DEL without one), with fresh container ids, pods, addresses, MACs, ids and times; a node's
/24 pod range reused by host-local style allocation; some failures, leaks (ADD without DEL) and DELs
without ADD. It is rotated like the plugin rotates it (``<file>.<UTC stamp>``, ``--file-size`` each)
and, like ``compress: true``, every backup but the newest is gzipped.

Then it runs each command as a subprocess and reports wall time, throughput over the trail's
uncompressed bytes (and over the bytes on disk) and peak RSS (``ru_maxrss`` of that child, from
``wait4``). The files are fresh in the page cache: this measures the tool, not the disk.

With ``--baseline REF`` (a git revision, e.g. ``main`` or ``HEAD~3``) the same trail is also asked by the
code of that revision, run by the same interpreter from an export of it (``git archive``), the two taking
turns run by run so that both meet the same machine; the table then gives each command's figures for
both and the ratio of the wall times (this tree / baseline): a regression is a ratio above 1 beyond the
runs' own spread, measured in one run rather than compared across days.

Usage: scripts/audit-benchmark.py [--size 1G] [--file-size 100M] [--runs 3] [--dir DIR] [--keep] [--json FILE]
                                  [--baseline REF]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cni_logger.filesink import backup_name, backup_stamp  # noqa: E402 - the plugin's own backup names

CLI = REPO / ".venv" / "bin" / "cni-logger"
NETWORK = "k8s-pod-network"
SUBNET = "10.244.1"
NAMESPACES = ("shop", "payments", "kube-system", "monitoring", "batch", "search", "default")
APPS = ("web", "api", "worker", "cron-report", "redis", "fluent-bit", "ingest", "frontend", "etl")
START = datetime(2026, 10, 1, tzinfo=UTC)
TARGET_MB_S = 100
TARGET_RSS_MIB = 100
MAX_LEAKS = 40
"""Leaked attachments keep their address: more than a few would exhaust the node's /24."""


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


# -- templates from the real plugin ------------------------------------------------------------------


def plugin_lines(work: Path, cli: Path, file_size: int) -> dict[str, dict[str, Any]]:
    """One event of each kind, written by the real plugin (the project's launcher-less entry point), with
    ``logOptions.maxSize`` the ``--file-size`` the trail rotates at: the audit checks that no backup is
    smaller than the ``maxSize`` its events were written with (a backup restored from an older copy)."""
    log = work / "template.log"
    prev = {"cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0", "mac": "c6:60:67:4b:5d:76"},
                           {"name": "veth24e0f2cc", "mac": "62:dc:de:d3:77:14"},
                           {"name": "eth0", "mac": "ca:4d:f4:32:50:b1", "sandbox": "/var/run/netns/cni-1c4b6a5e"}],
            "ips": [{"interface": 2, "address": f"{SUBNET}.17/24", "gateway": f"{SUBNET}.1"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": f"{SUBNET}.1"}], "dns": {}}
    base = {"cniVersion": "1.0.0", "name": NETWORK, "type": "logger", "logFile": str(log), "logToStderr": False,
            "logOptions": {"maxSize": file_size / (1 << 20)},
            "capabilities": {"portMappings": True},
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}
    env = {"PATH": "/usr/bin:/bin", "CNI_CONTAINERID": "0" * 64, "CNI_NETNS": "/var/run/netns/cni-1c4b6a5e",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin",
           "CNI_ARGS": "K8S_POD_INFRA_CONTAINER_ID=" + "0" * 64 + ";K8S_POD_UID=0d9a2c1e-7b5f-4e3a-9c8d-1f2e3a4b5c6d;"
                       "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-7d4b9c-x2kq"}
    kinds = [("ADD", {"prevResult": prev}), ("CHECK", {"prevResult": prev}), ("DEL", {"prevResult": prev}),
             ("DEL", {})]
    for command, extra in kinds:
        subprocess.run([str(cli)], input=json.dumps({**base, **extra}).encode(), env={**env, "CNI_COMMAND": command},
                       check=True, capture_output=True, timeout=60)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return dict(zip(("add", "check", "del", "del_bare"), lines, strict=True))


# -- the trail ---------------------------------------------------------------------------------------


class Pod:
    __slots__ = ("cid", "ip", "mac", "name", "namespace", "netns", "uid", "veth")

    def __init__(self, rng: random.Random, ip: str) -> None:
        self.cid = rng.randbytes(32).hex()
        self.namespace = rng.choice(NAMESPACES)
        self.name = f"{rng.choice(APPS)}-{rng.randbytes(4).hex()[:9]}-{rng.randbytes(3).hex()[:5]}"
        self.uid = str(uuid.UUID(bytes=rng.randbytes(16), version=4))
        self.ip = ip
        self.mac = ":".join(f"{b:02x}" for b in rng.randbytes(6))
        self.veth = "veth" + rng.randbytes(4).hex()
        self.netns = f"/var/run/netns/cni-{uuid.UUID(bytes=rng.randbytes(16))}"


class Trail:
    """Writes events in time order into rotated files named like the plugin names them."""

    def __init__(self, directory: Path, file_size: int) -> None:
        self.live = directory / "cni-logger.log"
        self.file_size = file_size
        self.out = open(self.live, "wb")  # noqa: SIM115 - rotated by hand below
        self.written = 0
        self.backups: list[Path] = []

    def write(self, line: bytes, now: datetime) -> None:
        self.out.write(line)
        self.written += len(line)
        if self.out.tell() >= self.file_size:
            self.out.close()
            backup = Path(backup_name(str(self.live), len(self.backups) + 1, backup_stamp(now.timestamp())))
            os.rename(self.live, backup)
            self.backups.append(backup)
            self.out = open(self.live, "wb")  # noqa: SIM115

    def close(self) -> None:
        self.out.close()


def generate(directory: Path, size: int, file_size: int, seed: int, cli: Path) -> dict[str, Any]:
    """Write ~``size`` bytes of events; return what the queries need to know about the trail."""
    rng = random.Random(seed)
    templates = plugin_lines(directory, cli, file_size)
    (directory / "template.log").unlink()
    trail = Trail(directory, file_size)
    now = START
    free = [f"{SUBNET}.{i}" for i in range(2, 255)]
    next_free = 0
    live: list[Pod] = []
    history: dict[str, list[tuple[str, str | None]]] = {}  # ip -> [(cid, DEL time)] for --at
    counts = {"events": 0, "leaks": 0, "orphans": 0, "failures": 0}
    pids = 4000

    def emit(kind: str, pod: Pod, ok: bool = True) -> None:
        nonlocal pids
        doc = templates[kind]
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        command = doc["cni"]["command"]
        pids += rng.randint(3, 40)
        doc["@timestamp"] = stamp
        outcome = "succeeded" if ok else "failed: audit log unavailable"
        doc["message"] = f"CNI {command} eth0 of container {pod.cid} on network {NETWORK} {outcome}"
        doc["log"]["level"] = "info" if ok else "error"
        doc["event"]["outcome"] = "success" if ok else "failure"
        doc["event"]["duration"] = int(rng.lognormvariate(17.0, 0.5))  # ~24 ms median
        doc["event"]["id"] = str(uuid.UUID(bytes=rng.randbytes(16), version=4))
        doc["container"]["id"] = pod.cid
        doc["process"] = {"pid": pids, "parent": {"pid": pids - 2}}
        cni = doc["cni"]
        cni["container_id"], cni["netns"] = pod.cid, pod.netns
        cni["args"].update(K8S_POD_INFRA_CONTAINER_ID=pod.cid, K8S_POD_UID=pod.uid, K8S_POD_NAMESPACE=pod.namespace,
                           K8S_POD_NAME=pod.name)
        orchestrator = doc["orchestrator"]
        orchestrator["namespace"] = pod.namespace
        orchestrator["resource"].update(name=pod.name, id=pod.uid)
        if "prev_result" in cni:
            orchestrator["resource"]["ip"] = doc["related"]["ip"] = [pod.ip]
            interfaces = cni["prev_result"]["interfaces"]
            interfaces[1]["name"], interfaces[2]["mac"], interfaces[2]["sandbox"] = pod.veth, pod.mac, pod.netns
            cni["prev_result"]["ips"][0]["address"] = f"{pod.ip}/24"
        trail.write((json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode(), now)
        counts["events"] += 1

    while trail.written < size:
        now += timedelta(microseconds=rng.randint(200_000, 9_000_000))
        roll = rng.random()
        if live and (len(live) > 90 or roll < 0.42):
            pod = live.pop(rng.randrange(len(live)))
            if counts["leaks"] < MAX_LEAKS and rng.random() < 0.001:
                counts["leaks"] += 1  # never deleted: the runtime lost track of it (its address stays taken)
                continue
            emit("del", pod)
            history.setdefault(pod.ip, []).append((pod.cid, now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")))
            free.append(pod.ip)
        elif live and roll < 0.52:
            emit("check", rng.choice(live))
        elif roll < 0.521:
            emit("del_bare", Pod(rng, ""))  # a DEL after an ADD chain failed before the logger
            counts["orphans"] += 1
        else:
            ip = free.pop(next_free % len(free))  # host-local: next address after the last one handed out
            next_free += 1
            pod = Pod(rng, ip)
            if rng.random() < 0.005:
                emit("add", pod, ok=False)
                emit("del_bare", pod)
                counts["failures"] += 1
                free.append(ip)
                continue
            emit("add", pod)
            live.append(pod)
    trail.close()
    busiest = max(history, key=lambda ip: len(history[ip]))
    middle = history[busiest][len(history[busiest]) // 2]
    return {"counts": counts, "backups": trail.backups, "ip": busiest, "holders": len(history[busiest]),
            "at_cid": middle[0], "at": middle[1], "written": trail.written, "still_live": len(live)}


def compress(paths: list[Path]) -> None:
    """gzip the given backups in parallel (level 9, as the plugin's compressor does)."""
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(_gzip_one, paths))


def _gzip_one(path: Path) -> None:
    with open(path, "rb") as src, gzip.GzipFile(str(path) + ".gz", "wb", compresslevel=9, mtime=0) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    path.unlink()


# -- measuring ---------------------------------------------------------------------------------------


MEASURE = r"""
import resource, subprocess, sys, time


def pss_kib(pid):  # proportional set size of the process and its children: shared pages counted once
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listed:
            pids = [str(pid), *listed.read().split()]
    except OSError:
        return 0
    total = 0
    for each in pids:
        try:
            with open(f"/proc/{each}/smaps_rollup") as rollup:
                total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
    return total


with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    start = time.perf_counter()
    command = subprocess.Popen(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    tree = 0
    while True:
        try:
            status = command.wait(0.05)
            break
        except subprocess.TimeoutExpired:
            tree = max(tree, pss_kib(command.pid))
    wall = time.perf_counter() - start
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, status, tree)
"""
"""A small, fresh process runs each command and reports ``getrusage(RUSAGE_CHILDREN)``: the peak RSS of
the largest process (the command, or the child it forks to inflate ``.gz`` files). Measuring from this
(large) process would not do: the kernel carries the forking process's peak RSS into the child's
``ru_maxrss`` across exec. The helper's own size (a few MiB) is the floor of what can be measured.

The peak RSS of one process does not show what a command and its children use together, and their
RSS summed would count the pages a forked child shares with its parent twice; so the helper also
samples, every 50 ms, the proportional set size (PSS: each shared page divided among its sharers) of
the command and its children, whose sum is the memory the command takes from the machine."""


Run = tuple[float, int, int, bytes, bytes, int]
"""What ``measure`` returns: wall seconds, peak RSS KiB, exit status, stdout, stderr, peak PSS KiB."""


MEASURED_ENV = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
"""The environment of every measured command: without ``PYTHON*`` variables, so that this tree's ``cni-logger`` and
the baseline's (run with ``-I``, which ignores them) run alike. With ``PYTHONDONTWRITEBYTECODE`` (set in many
shells and CI images), a module edited since its bytecode was written is compiled again on every run, and
``PYTHONUNBUFFERED`` makes every write to stdout a system call: either alone made this tree look slower."""


def compile_tree(python: Path, package: Path) -> None:
    """Byte-compile a ``cni_logger`` package before measuring it: no run pays for compiling its modules."""
    subprocess.run([str(python), "-m", "compileall", "-q", str(package)], env=MEASURED_ENV, check=True,
                   stdout=subprocess.DEVNULL)


def measure(argv: list[str], work: Path) -> Run:
    """Run ``argv``; wall seconds, peak RSS (KiB, of the largest process), exit status, stdout, stderr, and the
    peak PSS (KiB) of the command with its children."""
    out, err = work / "measure.out", work / "measure.err"
    report = subprocess.run([sys.executable, "-I", "-S", "-c", MEASURE, str(out), str(err), *argv],
                            capture_output=True, text=True, check=True, env=MEASURED_ENV).stdout.split()
    try:
        return (float(report[0]), int(report[1]), int(report[2]), out.read_bytes(), err.read_bytes(),
                int(report[3]))
    finally:
        out.unlink()
        err.unlink()


def baseline_cli(ref: str, work: Path, cli: Path) -> list[str]:
    """A command line that runs revision ``ref``'s ``cni-logger`` with the interpreter of ``cli``'s virtualenv:
    the revision's package exported into ``work`` (nothing in the repository or its worktrees changes)."""
    tree = work / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref, "cni_logger"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"--baseline {ref}: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    python = cli.parent / "python"
    compile_tree(python, tree / "cni_logger")
    return [str(python), "-I", "-c", f"import sys; sys.path.insert(0, {str(tree)!r}); sys.argv[0] = 'cni-logger'; "
            "from cni_logger.cli import main; main()"]


def answers(command: str) -> tuple[int, ...]:
    """The exit statuses that are answers, not failures: who-had may also say *possibly* (3: the generated
    trail has leaks, so superseded holders and unknown starts) or *no evidence* (4); the other commands
    found (0) or not (1). Whether the answer is the right one is checked apart."""
    return (0, 1, 3, 4) if command == "who-had" else (0, 1)


def check(name: str, argv: list[str], run: Run, info: dict[str, Any],
          work: Path, label: str) -> None:
    """Stop on a failed command or a wrong answer: a fast wrong answer is no result."""
    status, stdout, stderr = run[2], run[3], run[4]
    if status not in answers(argv[0]):
        print(stderr.decode(errors="replace"), file=sys.stderr)
        raise SystemExit(f"{name} ({label}): exit status {status}")
    if name.startswith("who-had") and "--at" in argv and info["at_cid"][:12].encode() not in stdout:
        raise SystemExit(f"{name} ({label}): wrong answer (expected {info['at_cid'][:12]}):\n{stdout.decode()}")
    if name == "report --html" and b"<svg id='occupancy'" not in (work / "report.html").read_bytes():
        raise SystemExit(f"{name} ({label}): the page has no occupancy picture")


def figures(name: str, run: Run, info: dict[str, Any], disk: int) -> dict[str, Any]:
    wall, rss_kib, status, stdout, _, tree_kib = run
    return {"command": name, "wall_s": round(wall, 3), "mb_per_s": round(info["written"] / 1e6 / wall, 1),
            "disk_mb_per_s": round(disk / 1e6 / wall, 1), "peak_rss_mib": round(rss_kib / 1024, 1),
            "peak_pss_with_children_mib": round(tree_kib / 1024, 1), "exit": status,
            "output_lines": stdout.count(b"\n")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1G"),
                        help="uncompressed bytes of events to generate (default 1G)")
    parser.add_argument("--file-size", type=parse_size, default=parse_size("100M"),
                        help="rotate at this size, like logOptions.maxSize (default 100M)")
    parser.add_argument("--dir", type=Path, help="where to make the temporary trail (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the trail (its path is printed)")
    parser.add_argument("--runs", type=int, default=3,
                        help="runs per command; the best is reported (default 3: on a shared machine one run can be "
                             "a fifth slower than the next)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cli", type=Path, default=CLI, help=f"the cni-logger to measure (default {CLI})")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--baseline", metavar="REF",
                        help="also measure git revision REF on the same trail, runs interleaved, and print the ratios")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cni-audit-bench-", dir=args.dir))
    try:
        started = time.perf_counter()
        info = generate(work, args.size, args.file_size, args.seed, args.cli)
        compress(info["backups"][:-1])
        files = sorted(p for p in work.iterdir())
        disk = sum(p.stat().st_size for p in files)
        print(f"trail: {work} ({len(files)} files, {sum(p.name.endswith('.gz') for p in files)} gzipped), "
              f"{info['written'] / 1e6:.0f} MB of events ({info['counts']['events']} events), {disk / 1e6:.0f} MB on "
              f"disk; generated in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        print(f"       busiest address {info['ip']}: {info['holders']} holders; {info['counts']['leaks']} leaked, "
              f"{info['counts']['orphans']} DELs without ADD, {info['counts']['failures']} failed ADDs, "
              f"{info['still_live']} pods running at the end", file=sys.stderr)
        log = ["--log-file", str(work / "cni-logger.log")]
        cases = [
            (f"who-had {info['ip']} --at T", ["who-had", info["ip"], "--at", info["at"], *log]),
            (f"who-had {info['ip']}", ["who-had", info["ip"], *log]),
            ("leaks", ["leaks", *log]),
            ("stats", ["stats", *log]),
            (f"events --container {info['at_cid'][:12]}", ["events", "--container", info["at_cid"][:12], *log]),
            (f"who-had {SUBNET}.0/24", ["who-had", f"{SUBNET}.0/24", *log]),
            (f"who-had {SUBNET}.0/24 --at T", ["who-had", f"{SUBNET}.0/24", "--at", info["at"], *log]),
            ("report", ["report", *log]),
            ("report --html", ["report", "--html", str(work / "report.html"), *log]),
        ]
        results, before = [], []
        clis = {"this tree": [str(args.cli)]}
        if (args.cli.parent / "python").exists():  # the project's virtualenv (its package is this tree's)
            compile_tree(args.cli.parent / "python", REPO / "cni_logger")
        if args.baseline:
            clis[f"baseline {args.baseline}"] = baseline_cli(args.baseline, work, args.cli)
        floor = measure(["/bin/true"], work)[1]
        print(f"\nmeasurement floor (the measuring process's own size): {floor / 1024:.1f} MiB")
        print(f"{'command':<36} {'wall s':>8} {'MB/s':>8} {'disk MB/s':>10} {'peak RSS MiB':>13} "
              f"{'with children':>14} {'exit':>5}" + (f" {'baseline s':>10} {'ratio':>6}" if args.baseline else ""))
        for name, argv in cases:
            best: dict[str, Run] = {}
            for turn in range(args.runs):
                order = list(clis.items()) if turn % 2 == 0 else list(reversed(clis.items()))
                for label, cli in order:
                    run = measure([*cli, *argv], work)
                    if label not in best or run[0] < best[label][0]:
                        best[label] = run
            for label, run in best.items():
                check(name, argv, run, info, work, label)
            row = figures(name, best["this tree"], info, disk)
            results.append(row)
            line = (f"{name:<36} {row['wall_s']:>8.2f} {row['mb_per_s']:>8.0f} {row['disk_mb_per_s']:>10.0f} "
                    f"{row['peak_rss_mib']:>13.1f} {row['peak_pss_with_children_mib']:>14.1f} {row['exit']:>5}")
            if args.baseline:
                old = figures(name, best[f"baseline {args.baseline}"], info, disk)
                old["ratio_this_to_baseline"] = round(row["wall_s"] / old["wall_s"], 3)
                before.append(old)
                line += f" {old['wall_s']:>10.2f} {old['ratio_this_to_baseline']:>6.3f}"
            print(line)
        met = all(r["mb_per_s"] >= TARGET_MB_S and max(r["peak_rss_mib"], r["peak_pss_with_children_mib"])
                  < TARGET_RSS_MIB for r in results)
        print(f"\ntargets (>= {TARGET_MB_S} MB/s, peak RSS and peak PSS with children < {TARGET_RSS_MIB} MiB): "
              f"{'met' if met else 'NOT met'}")
        print(f"MB/s: uncompressed event bytes ({info['written'] / 1e6:.0f} MB) per wall second; disk MB/s: bytes on "
              f"disk ({disk / 1e6:.0f} MB). {os.cpu_count()} CPUs; files in the page cache. 'with children': peak PSS "
              "of the command and the processes it forks (sampled every 50 ms).")
        if args.baseline:
            print(f"ratio: wall time of this tree / wall time of {args.baseline}, best of {args.runs} runs each, "
                  "taking turns on the same trail (above 1: slower than the baseline)")
        if args.json:
            args.json.write_text(json.dumps({"trail": {"bytes": info["written"], "disk_bytes": disk,
                                                       "files": len(files), **info["counts"]},
                                             "results": results,
                                             **({"baseline": {"ref": args.baseline, "results": before}}
                                                if args.baseline else {})}, indent=2) + "\n")
        if args.keep:
            print(f"kept: {work}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
