"""PGO training run for the bundle's CPython (PROFILE_TASK of scripts/bundle/build-python.sh).

The plugin is a short-lived process: most of its time is interpreter start-up, unmarshalling and
executing the stdlib modules it imports (``typing``, ``re``, ``enum``, ``functools``, ``json``,
``logging``, ``datetime``, ``socket``...), and a little JSON and logging work. CPython's default
training run (most of the regression suite, ~15 min here) optimises for everything else too; this one
trains on what the plugin and the operator commands do, in about a minute. It uses only the standard
library: the project is not available to the interpreter build (and must not be part of its cache key).
"""

from __future__ import annotations

import subprocess
import sys

# One plugin invocation's shape, without the project: the imports of the ADD path and of the operator
# commands, then JSON in and out, a structured log line through logging, a timestamp, a file append.
INVOCATION = r"""
import os, sys, json, socket, fcntl, select, errno, time, datetime, re, enum, functools, collections
import contextlib, typing, logging, dataclasses, string, struct, threading, traceback
conf = json.loads('{"cniVersion": "1.0.0", "name": "k8s", "type": "logger", "prevResult": {"cniVersion":'
                  ' "1.0.0", "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox":'
                  ' "/var/run/netns/cni-1"}], "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1",'
                  ' "interface": 0}], "dns": {}}}')
event = {"@timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
         "event": {"action": "add", "outcome": "success"}, "cni": {"config": conf},
         "host": {"hostname": socket.gethostname()}, "process": {"pid": os.getpid()}}
line = json.dumps(event, separators=(",", ":"), sort_keys=True, default=str)
logger = logging.getLogger("cni")
handler = logging.StreamHandler(open(os.devnull, "w"))
handler.setFormatter(logging.Formatter("%(message)s"))
logger.addHandler(handler)
logger.warning(line)
fd = os.open(os.devnull, os.O_WRONLY | os.O_APPEND)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, line.encode() + b"\n")
os.close(fd)
re.compile(r"^[A-Za-z0-9_.\-]+$").match(conf["name"])
sys.stdout.write(json.dumps(conf["prevResult"]) + "\n")
"""

OPERATOR = r"""
import argparse, gzip, hashlib, io, json, os, shutil, tempfile, glob, zlib
p = argparse.ArgumentParser(prog="cni-logger")
sub = p.add_subparsers(dest="command")
i = sub.add_parser("install")
i.add_argument("--conf-dir", default="/etc/cni/net.d")
i.add_argument("--watch", action="store_true")
i.add_argument("--interval", type=float, default=5.0)
a = p.parse_args(["install", "--watch", "--interval=0.5"])
doc = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}, {"type": "logger"}]}
data = (json.dumps(doc, indent=2) + "\n").encode() * 200
hashlib.sha256(data).hexdigest()
with tempfile.TemporaryDirectory() as d:
    with gzip.open(os.path.join(d, "x.gz"), "wb") as f:
        f.write(data)
    with gzip.open(os.path.join(d, "x.gz"), "rb") as f:
        assert f.read() == data
    for line in io.BytesIO(data).read().splitlines():
        pass
"""


def run(code: str, times: int, *flags: str) -> None:
    for _ in range(times):
        subprocess.run([sys.executable, *flags, "-c", code], stdout=subprocess.DEVNULL, check=True)


def main() -> None:
    run("pass", 40, "-I", "-S")
    run("pass", 20, "-I")
    run(INVOCATION, 150, "-I", "-S")
    run(OPERATOR, 30, "-I")
    # A few regression-test modules of the same stdlib areas, for their steady-state paths.
    subprocess.run([sys.executable, "-m", "test", "--pgo", "test_json", "test_re", "test_typing", "test_enum",
                    "test_functools", "test_argparse", "test_zlib", "test_dataclasses"], check=False)


if __name__ == "__main__":
    main()
