#!/usr/bin/env python3
"""cni-logger benchmark: what one invocation costs, against the interpreter it runs on.

Every figure is measured in this one run on this machine, the cases interleaved round by round (in
a fresh shuffled order each round) so that load on the machine hits all of them alike; ratios are
against the bare interpreter the plugin runs on (``python -I -c pass``), measured in the same rounds.
Wall time is from spawn to reaped exit; peak RSS is the child's ``ru_maxrss`` from ``wait4``.

With ``--bundle FOLDER`` (an unpacked scripts/build-bundle.sh tarball) the same rounds also run the
bundle's own bare interpreter and the plugin (ADD, DEL, VERSION, STATUS) through a launcher written by
the bundle: the column ``own`` is then the ratio to the bare interpreter each case runs on (the
bundle's, or Debian's).

With ``--baseline-plugin PATH`` (a launcher written by another version of cni-logger, e.g. the commit
before a restructuring) the same rounds also run that launcher's ADD, DEL, VERSION and STATUS, so a
before/after comparison comes from one run under one load, not from two runs minutes apart;
``--baseline-label`` names its cases. Their ratio is against the same bare-interpreter median.

Usage: scripts/benchmark.py [--runs N] [--json FILE] [--plugin PATH] [--debug PATH] [--bundle FOLDER]
                            [--baseline-plugin PATH [--baseline-label TEXT]] [--throughput-adds N]
                            [--log-sizes MB,MB,...]
(scripts/benchmark.sh sets the machine up first and passes its arguments here.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPAWN: list[Path] = []  # the spawn_rss helper, compiled at start
PREV_RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "cni0", "mac": "c6:60:67:4b:5d:76"},
                   {"name": "veth24e0f2cc", "mac": "62:dc:de:d3:77:14"},
                   {"name": "eth0", "mac": "ca:4d:f4:32:50:b1", "sandbox": "/var/run/netns/cni-1c4b6a5e"}],
    "ips": [{"interface": 2, "address": "10.244.1.17/24", "gateway": "10.244.1.1"}],
    "dns": {},
}
ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "CNI_CONTAINERID": "5f1a8c0d2b7e4f66a9d3c1e0b8a7f6d5c4b3a291807f6e5d4c3b2a1908f7e6d5",
    "CNI_NETNS": "/var/run/netns/cni-1c4b6a5e",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
    "CNI_ARGS": "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-7d4b9c-x2kq;K8S_POD_UID=0d9a2c1e;IgnoreUnknown=1",
}
JQ_LOGGER = r"""#!/bin/bash
# A logger of the classic kind: shell + jq, one record per call, prevResult echoed back.
stdin=$(cat)
log=$(jq -r '.logFile // "/dev/null"' <<<"$stdin")
jq -c --arg cmd "$CNI_COMMAND" --arg id "$CNI_CONTAINERID" --arg ifname "$CNI_IFNAME" \
   --arg ts "$(date -u +%FT%T.%NZ)" '{ts: $ts, command: $cmd, container: $id, ifname: $ifname, config: .}' \
   <<<"$stdin" >>"$log"
case "$CNI_COMMAND" in
  ADD) jq -c '(.prevResult // {}) + {cniVersion: .cniVersion}' <<<"$stdin" ;;
  VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;
esac
"""


class Case:
    """One command line with its environment and stdin."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], stdin: bytes = b"") -> None:
        self.name, self.argv, self.env, self.stdin = name, argv, env, stdin
        self.wall: list[float] = []
        self.rss_kib: list[int] = []

    def run_once(self, stdin_path: Path) -> tuple[float, int]:
        stdin_path.write_bytes(self.stdin)
        out = subprocess.run([str(SPAWN[0]), str(stdin_path), *self.argv], env=self.env, capture_output=True,
                             check=True, text=True).stdout.split()
        wall_ns, rss_kib, status = (int(x) for x in out)
        if status != 0:
            raise SystemExit(f"benchmark case {self.name!r} failed with exit status {status}")
        return wall_ns / 1e9, rss_kib

    def record(self, stdin_path: Path) -> None:
        wall, rss = self.run_once(stdin_path)
        self.wall.append(wall)
        self.rss_kib.append(rss)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def interpreter_of(launcher: Path) -> str:
    first = launcher.read_text(errors="replace").splitlines()[0]
    if not first.startswith("#!"):
        raise SystemExit(f"{launcher} is not a launcher script (no #! line)")
    return first[2:].split()[0]


def config(version: str, log: Path | None, **extra: Any) -> bytes:
    conf: dict[str, Any] = {"cniVersion": version, "name": "k8s-pod-network", "type": "logger", **extra}
    if log is not None:
        conf["logFile"] = str(log)
    return json.dumps(conf).encode()


def bundle_cases(folder: Path, work: Path) -> list[Case]:
    """The bundle's bare interpreter and its plugin (ADD, DEL, VERSION, STATUS), through a launcher the
    bundle wrote."""
    launcher = work / "bundle-bin" / "logger"
    subprocess.run([str(folder / "bin" / "cni-logger"), "launcher", str(launcher)], check=True,
                   stderr=subprocess.DEVNULL)
    return [Case("bundle python -I -c pass", [interpreter_of(launcher), "-I", "-c", "pass"], dict(ENV)),
            *plugin_cases(launcher, work / "bundle" / "cni.log", "bundle ")]


def plugin_cases(plugin: Path, log: Path, prefix: str = "") -> list[Case]:
    """The plugin's own commands: ADD and DEL into a file sink, VERSION, STATUS."""
    opts = {"logOptions": {"maxSize": 10, "maxBackups": 2}}
    return [
        Case(f"{prefix}logger ADD (file sink)", [str(plugin)], {**ENV, "CNI_COMMAND": "ADD"},
             config("1.0.0", log, prevResult=PREV_RESULT, logToStderr=False, **opts)),
        Case(f"{prefix}logger DEL (file sink)", [str(plugin)], {**ENV, "CNI_COMMAND": "DEL"},
             config("1.0.0", log, prevResult=PREV_RESULT, logToStderr=False, **opts)),
        Case(f"{prefix}logger VERSION", [str(plugin)], {**ENV, "CNI_COMMAND": "VERSION"},
             b'{"cniVersion":"1.1.0"}'),
        Case(f"{prefix}logger STATUS", [str(plugin)], {**ENV, "CNI_COMMAND": "STATUS"},
             config("1.1.0", log, logToStderr=False, **opts)),
    ]


def baseline_cases(plugin: Path, main_plugin: Path, label: str, work: Path) -> tuple[Case | None, list[Case]]:
    """Another launcher's ADD, DEL, VERSION and STATUS, each case named after ``label``, and its own bare
    interpreter only when that is not the main launcher's (the ``own`` column of its cases then uses it)."""
    cases = plugin_cases(plugin, work / "baseline" / "cni.log", f"{label}: ")
    python = interpreter_of(plugin)
    if Path(python).resolve() == Path(interpreter_of(main_plugin)).resolve():
        return None, cases
    return Case(f"{label}: python -I -c pass", [python, "-I", "-c", "pass"], dict(ENV)), cases


def latency_cases(plugin: Path, debug: Path | None, work: Path) -> list[Case]:
    python = interpreter_of(plugin)
    cases = [
        Case("python -I -c pass", [python, "-I", "-c", "pass"], dict(ENV)),
        Case("/bin/true (exec floor)", ["/bin/true"], dict(ENV)),
        *plugin_cases(plugin, work / "latency" / "cni.log"),
    ]
    if debug is not None:
        debug_conf = json.dumps({"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "debug",
                                 "cniOutput": str(work / "debug.out"), "prevResult": PREV_RESULT}).encode()
        cases += [Case("Go debug ADD", [str(debug)], {**ENV, "CNI_COMMAND": "ADD", "CNI_NETNS_OVERRIDE": "1"},
                       debug_conf),
                  Case("Go debug VERSION", [str(debug)], {**ENV, "CNI_COMMAND": "VERSION"},
                       b'{"cniVersion":"1.0.0"}')]
    if shutil.which("jq"):
        jq_logger = work / "jq-logger"
        jq_logger.write_text(JQ_LOGGER)
        jq_logger.chmod(0o755)
        cases.append(Case("shell+jq logger ADD", [str(jq_logger)], {**ENV, "CNI_COMMAND": "ADD"},
                          config("1.0.0", work / "jq.log", prevResult=PREV_RESULT)))
    return cases


class ThickNode:
    """Thick mode as a DaemonSet runs it: ``<cli> install --watch --agent`` in directories of its own (its agent
    serving the shim it installed), for the thick cases; ``stop`` ends it."""

    def __init__(self, cli: Path, work: Path) -> None:
        self.root = work
        net_d, self.bin_dir = work / "net.d", work / "bin"
        net_d.mkdir(parents=True)
        (net_d / "10-bench.conflist").write_text(json.dumps(
            {"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [{"type": "bridge", "bridge": "bench0"}]}))
        self.socket = work / "run" / "agent" / "agent.sock"
        ready = work / "ready"
        self.proc = subprocess.Popen(
            [str(cli), "install", "--watch", "--agent", "--agent-socket", str(self.socket), "--interval", "3600",
             "--heartbeat", "0", "--conf-dir", str(net_d), "--bin-dir", str(self.bin_dir),
             "--state-dir", str(work / "state"), "--results-cache", str(work / "results"),
             "--ready-file", str(ready), "--log-file", str(work / "cni.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (ready.exists() and self.socket.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{cli} install --watch --agent did not get ready (is its shim built? "
                                 "scripts/build-shim.sh)")
            time.sleep(0.1)

    def down_shim(self) -> Path:
        """The installed shim configured for a socket nobody serves: exactly the shim a node runs while its agent
        is down (its connect fails with ENOENT, it runs the plugin in-process)."""
        from cni_logger.install import shim

        installed = (self.bin_dir / "logger").read_bytes()
        conf = shim.read_config(installed)
        target = self.root / "down-bin" / "logger"
        target.parent.mkdir()
        target.write_bytes(shim.configure(installed, socket=str(self.root / "run" / "no-agent.sock"),
                                          python=conf["python"], program=conf["program"]))
        target.chmod(0o755)
        return target

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def thick_cases(node: ThickNode, prefix: str = "") -> list[Case]:
    """Thick mode's ADD, DEL and VERSION through the installed shim with the agent up, and ADD, DEL through the
    same shim with the agent down (the in-process fallback)."""
    log = node.root / "cni.log"
    add = config("1.0.0", log, prevResult=PREV_RESULT, logToStderr=False, logOptions={"maxSize": 10, "maxBackups": 2})
    shim, down = node.bin_dir / "logger", node.down_shim()
    return [
        Case(f"{prefix}thick ADD (agent)", [str(shim)], {**ENV, "CNI_COMMAND": "ADD"}, add),
        Case(f"{prefix}thick DEL (agent)", [str(shim)], {**ENV, "CNI_COMMAND": "DEL"}, add),
        Case(f"{prefix}thick VERSION (agent)", [str(shim)], {**ENV, "CNI_COMMAND": "VERSION"},
             b'{"cniVersion":"1.1.0"}'),
        Case(f"{prefix}thick ADD (agent down: fallback)", [str(down)], {**ENV, "CNI_COMMAND": "ADD"}, add),
        Case(f"{prefix}thick DEL (agent down: fallback)", [str(down)], {**ENV, "CNI_COMMAND": "DEL"}, add),
    ]


def throughput(plugin: Path, work: Path, parallel: int, total: int, baseline: bool = False) -> float:
    """ADDs per second with ``parallel`` concurrent processes appending to one rotating file
    (or, with ``baseline``, runs per second of the bare interpreter under the same harness).

    Each worker is a shell loop, so the harness's own cost per ADD is one cheap fork of ``sh``.
    """
    if baseline:
        loop = 'i=0; while [ "$i" -lt "$1" ]; do "$0" -I -c pass || exit 1; i=$((i+1)); done'
        counts = [total // parallel + (1 if i < total % parallel else 0) for i in range(parallel)]
        start = time.perf_counter()
        workers = [subprocess.Popen(["/bin/sh", "-c", loop, interpreter_of(plugin), str(n)]) for n in counts]
        if any(w.wait() != 0 for w in workers):
            raise SystemExit("the baseline throughput run failed")
        return total / (time.perf_counter() - start)
    log = work / f"throughput-{parallel}" / "cni.log"
    stdin = work / f"throughput-{parallel}.json"
    stdin.write_bytes(config("1.0.0", log, prevResult=PREV_RESULT, logToStderr=False,
                             logOptions={"maxSize": 1, "maxBackups": 0}))
    env = {**ENV, "CNI_COMMAND": "ADD"}
    loop = 'i=0; while [ "$i" -lt "$2" ]; do "$0" <"$1" >/dev/null 2>&1 || exit 1; i=$((i+1)); done'
    counts = [total // parallel + (1 if i < total % parallel else 0) for i in range(parallel)]
    start = time.perf_counter()
    workers = [subprocess.Popen(["/bin/sh", "-c", loop, str(plugin), str(stdin), str(n)], env=env)
               for n in counts]
    failed = sum(1 for w in workers if w.wait() != 0)
    elapsed = time.perf_counter() - start
    if failed:
        raise SystemExit(f"{failed} throughput workers saw a failing ADD")
    written = sum(p.read_bytes().count(b"\n") for p in log.parent.iterdir() if p.is_file())
    if written != total:
        raise SystemExit(f"throughput run with {parallel} processes kept {written} of {total} events")
    return total / elapsed


def fill_log(path: Path, megabytes: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps({"message": "filler event", "pad": "x" * 900}) + "\n").encode()
    block = line * (1024 * 1024 // len(line) + 1)
    with open(path, "wb") as out:
        while out.tell() < megabytes * 1024 * 1024:
            out.write(block)


def log_size_cases(plugin: Path, work: Path, sizes: list[int]) -> list[Case]:
    cases = []
    for size in sizes:
        log = work / f"size-{size}" / "cni.log"
        fill_log(log, size)
        cases.append(Case(f"ADD into a {size} MB log", [str(plugin)], {**ENV, "CNI_COMMAND": "ADD"},
                          config("1.0.0", log, prevResult=PREV_RESULT, logToStderr=False,
                                 logOptions={"maxSize": 1000})))
    return cases


def run_rounds(cases: list[Case], runs: int, work: Path, warmup: int = 3) -> None:
    """Every case once per round, in an order shuffled afresh each round (seeded, so repeatable): a case
    that always followed the same neighbour (the jq logger's fork storm, a case writing the same file)
    would carry that neighbour's after-effects in all its samples, enough to tilt a before/after
    comparison by several percent on a loaded machine."""
    stdin_path = work / "stdin.json"
    for _ in range(warmup):
        for case in cases:
            case.run_once(stdin_path)
    order = random.Random(10)
    for _ in range(runs):
        for case in order.sample(cases, len(cases)):
            case.record(stdin_path)


def thick_summary(cases: list[Case]) -> dict[str, float]:
    """The issue's comparisons, for each build measured: thick ADD (agent) against Go ``debug`` ADD (goal: at most
    1), the fallback's ADD and DEL against the launcher's (goal: at most 1)."""
    med = {case.name: statistics.median(case.wall) for case in cases}
    out: dict[str, float] = {}
    for prefix in ("", "bundle "):
        pairs = [(f"{prefix}thick ADD (agent) / Go debug ADD", f"{prefix}thick ADD (agent)", "Go debug ADD"),
                 (f"{prefix}thick ADD (fallback) / {prefix}launcher ADD", f"{prefix}thick ADD (agent down: fallback)",
                  f"{prefix}logger ADD (file sink)"),
                 (f"{prefix}thick DEL (fallback) / {prefix}launcher DEL", f"{prefix}thick DEL (agent down: fallback)",
                  f"{prefix}logger DEL (file sink)")]
        for label, mine, other in pairs:
            if mine in med and other in med:
                out[label] = round(med[mine] / med[other], 3)
    return out


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=60, help="measured rounds of the latency cases")
    parser.add_argument("--throughput-adds", type=int, default=192,
                        help="ADDs per throughput run (0 skips the throughput runs)")
    parser.add_argument("--log-sizes", default="0,10,100", help="MB of existing log for the ADD-cost cases")
    parser.add_argument("--plugin", type=Path, help="the plugin launcher (default: one written for .venv)")
    parser.add_argument("--debug", type=Path, default=Path("/opt/cni-logger-tools/bin/debug"))
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--bundle", type=Path, help="an unpacked bundle folder to measure as well")
    parser.add_argument("--baseline-plugin", type=Path,
                        help="another launcher (e.g. the code before a change) whose ADD, DEL, VERSION and "
                             "STATUS run in the same rounds")
    parser.add_argument("--baseline-label", default="baseline", help="names the --baseline-plugin cases")
    parser.add_argument("--thick-cli", type=Path,
                        help="a cni-logger whose installation has the shim (libexec/cni-logger-shim): thick mode's "
                             "cases run through the shim it installs, its agent up and down (the bundle's too, "
                             "with --bundle)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cni-logger-bench-"))
    try:
        SPAWN.append(work / "spawn_rss")
        subprocess.run(["cc", "-O2", "-o", str(SPAWN[0]), str(REPO / "scripts" / "spawn_rss.c")], check=True)
        plugin = args.plugin
        if plugin is None:
            plugin = work / "logger"
            subprocess.run([str(REPO / ".venv" / "bin" / "cni-logger"), "launcher", str(plugin)], check=True,
                           stderr=subprocess.DEVNULL)
        interpreter = interpreter_of(plugin)  # now: a launcher written here goes with the work directory
        debug = args.debug if args.debug.exists() else None
        latency = latency_cases(plugin, debug, work)
        sizes = [int(s) for s in args.log_sizes.split(",") if s]
        by_size = log_size_cases(plugin, work, sizes)
        bundled = bundle_cases(args.bundle, work) if args.bundle else []
        baseline_bare, baseline_plugin = (baseline_cases(args.baseline_plugin, plugin, args.baseline_label, work)
                                          if args.baseline_plugin else (None, []))
        baseline = ([baseline_bare] if baseline_bare else []) + baseline_plugin
        nodes: list[ThickNode] = []
        thick: list[Case] = []
        if args.thick_cli is not None:
            nodes.append(ThickNode(args.thick_cli, work / "thick"))
            thick += thick_cases(nodes[-1])
        if args.bundle is not None and (args.bundle / "libexec" / "cni-logger-shim").exists():
            nodes.append(ThickNode(args.bundle / "bin" / "cni-logger", work / "bundle-thick"))
            thick += thick_cases(nodes[-1], "bundle ")
        try:
            run_rounds(latency + baseline + bundled + thick + by_size, args.runs, work)
        finally:
            for node in nodes:
                node.stop()
        parallels = (1, 8, 32) if args.throughput_adds > 0 else ()
        rates = {n: throughput(plugin, work, n, args.throughput_adds) for n in parallels}
        bare_rates = {n: throughput(plugin, work, n, args.throughput_adds, baseline=True) for n in parallels}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = statistics.median(latency[0].wall)
    own_base = statistics.median(bundled[0].wall) if bundled else base
    baseline_base = statistics.median(baseline_bare.wall) if baseline_bare else base
    rows: list[dict[str, Any]] = []
    for case in latency + baseline + bundled + thick + by_size:
        med = statistics.median(case.wall)
        own = (own_base if case in bundled or case.name.startswith("bundle ")
               else baseline_base if case in baseline else base)
        rows.append({"case": case.name, "median_ms": round(med * 1000, 2),
                     "p95_ms": round(percentile(case.wall, 0.95) * 1000, 2), "ratio": round(med / base, 2),
                     "own": round(med / own, 2), "peak_rss_mib": round(max(case.rss_kib) / 1024, 1)})
    # this tree's median over the baseline's, command by command (empty without --baseline-plugin)
    mine = {case.name: statistics.median(case.wall) for case in latency}
    against: dict[str, float] = {}
    for case in baseline_plugin:
        name = case.name.removeprefix(f"{args.baseline_label}: ")
        against[name] = round(mine[name] / statistics.median(case.wall), 3)
    result = {"machine": machine(), "interpreter": interpreter,
              "bundle": str(args.bundle) if args.bundle else None,
              "baseline": ({"plugin": str(args.baseline_plugin), "label": args.baseline_label,
                            "interpreter": interpreter_of(args.baseline_plugin)} if args.baseline_plugin else None),
              "runs": args.runs, "latency": rows, "against_baseline": against or None,
              "thick": thick_summary(latency + bundled + thick) or None,
              "throughput_adds_per_s": {str(n): round(rate, 1) for n, rate in rates.items()},
              "throughput_bare_interpreter_per_s": {str(n): round(rate, 1) for n, rate in bare_rates.items()}}
    width = max(len(r["case"]) for r in rows)
    print(f"cni-logger benchmark: {args.runs} interleaved rounds; ratio = median / median of "
          f"'python -I -c pass'\nmachine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
          f"{result['machine']['memory_gib']} GiB, Linux {result['machine']['kernel']}\n")
    if bundled:
        print("own = median / median of the bare interpreter the case runs on ('bundle python -I -c pass' "
              "for the bundle's cases)\n")
    if baseline:
        print(f"'{args.baseline_label}:' cases: {args.baseline_plugin} "
              f"(interpreter {interpreter_of(args.baseline_plugin)})\n")
    print(f"{'case':{width}}  {'median ms':>9}  {'p95 ms':>8}  {'ratio':>6}  {'own':>5}  {'peak RSS MiB':>12}")
    for r in rows:
        print(f"{r['case']:{width}}  {r['median_ms']:9.2f}  {r['p95_ms']:8.2f}  {r['ratio']:6.2f}  "
              f"{r['own']:5.2f}  {r['peak_rss_mib']:12.1f}")
    if against:
        print(f"\nthis tree against '{args.baseline_label}' (median / its median, same rounds):")
        for name, change in against.items():
            print(f"  {name:{width}}  {change:5.3f}")
    if result["thick"]:
        print("\nthick mode (median / median, same rounds):")
        for name, value in result["thick"].items():
            print(f"  {name:{width}}  {value:5.2f}")
    if rates:
        print("\nthroughput, ADDs/s into one rotating file (bare interpreter runs/s, same harness):")
    for n, rate in rates.items():
        print(f"  {n:2d} parallel: {rate:6.1f}   ({bare_rates[n]:.1f})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
