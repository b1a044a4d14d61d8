"""``install --watch --metrics-address``: Prometheus metrics, scraped by Debian's real ``prometheus`` server and
read back through its HTTP query API; the shipped alerting rules loaded by that server, checked with
``promtool check rules`` and exercised with ``promtool test rules``; and ``/healthz``, the DaemonSet's liveness
probe, failing when the watcher is stuck.

The watcher and the plugin run as real processes: the plugin's ADD and DEL through the launcher the watcher
installed (its events are counted from the trail as it grows, across rotations), lost events through
``dropped.record`` (what the plugin calls when its append fails), the failsafe by a foreign launcher.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cni_logger import dropped
from tests.harness.plugin import REPO, cni_env
from tests.harness.waiting import wait_for
from tests.install.test_transactions import CNI_LOGGER, FOREIGN, Layout, stop
from tests.system.install.test_watch_log import json_lines

RULES_DIR = REPO / "deploy" / "prometheus"
RULES = RULES_DIR / "cni-logger-rules.yaml"
RULES_TEST = RULES_DIR / "cni-logger-rules.test.yaml"
MANIFEST = REPO / "deploy" / "kubernetes" / "cni-logger.yaml"
PREV = {"cniVersion": "0.3.1", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"version": "4", "address": "10.244.1.7/24", "interface": 0}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """The status and body of a GET (an HTTP error status is an answer too); raises when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Prometheus:
    """A real Prometheus server scraping one target every second, with the shipped rules loaded."""

    def __init__(self, tmp: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "cni-logger", "static_configs": [{"targets": [target]}]}],
        }))
        self.log = (tmp / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)

        def is_ready() -> bool:
            try:
                return get(self.url + "/-/ready", 2)[0] == 200
            except OSError:
                return self.proc.poll() is not None
        assert wait_for(is_ready) and self.proc.poll() is None, (tmp / "prometheus.log").read_text()

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, body = get(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        doc = json.loads(body)
        assert status == 200 and doc["status"] == "success", doc
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single sample ``expr`` gives now (None: no sample)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def becomes(self, expr: str, wanted: float) -> bool:
        return wait_for(lambda: self.value(expr) == wanted)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus; scripts/setup-system.sh)")
    servers: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        servers.append(Prometheus(tmp_path / "prometheus", target))
        return servers[-1]

    (tmp_path / "prometheus").mkdir()
    yield start
    for server in servers:
        server.close()


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Layout]:
    if not CNI_LOGGER.exists():
        pytest.skip(f"{CNI_LOGGER} is not installed (scripts/setup-system.sh)")
    (tmp_path / "node").mkdir()
    yield Layout(tmp_path / "node")


def watch(layout: Layout, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        layout.argv("install", "--watch", "--interval", "0.2", "--ready-file", str(layout.ready),
                    "--log-file", str(layout.root / "log" / "audit.log"), "--check-timeout", "5",
                    "--metrics-address", f"127.0.0.1:{port}", *extra),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def invoke(layout: Layout, command: str, container: str) -> None:
    """The installed launcher, run as the runtime runs the chain's logger entry."""
    doc = json.loads(layout.conf.read_bytes())
    (entry,) = [p for p in doc["plugins"] if p["type"] == "logger"]
    config = {"cniVersion": doc["cniVersion"], "name": doc["name"], **entry, "prevResult": PREV}
    proc = subprocess.run([str(layout.launcher)], input=json.dumps(config).encode(), capture_output=True,
                          env=cni_env(command, CNI_CONTAINERID=container), timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_prometheus_scrapes_the_watcher_and_reads_every_metric_back(
        layout: Layout, prometheus: Callable[[str], Prometheus]) -> None:
    port = free_port()
    log = layout.root / "log" / "audit.log"
    watcher = watch(layout, port, "--max-size", "0.002")       # 2 kB: the trail rotates every few events
    try:
        assert wait_for(layout.ready.exists), "never ready"
        prom = prometheus(f"127.0.0.1:{port}")
        conf = str(layout.conf)
        assert prom.becomes(f'cni_logger_in_chain{{file="{conf}",network="cbr0"}}', 1)
        assert prom.becomes("cni_logger_ready", 1)
        assert wait_for(lambda: (prom.value('cni_logger_self_checks_total{result="pass"}') or 0) >= 1)

        for n in range(5):
            invoke(layout, "ADD", f"ctr-{n}")
        invoke(layout, "DEL", "ctr-0")
        assert len(list(log.parent.iterdir())) > 2, "the trail rotated"
        assert prom.becomes('cni_logger_events_total{command="ADD",outcome="success"}', 5)
        assert prom.becomes('cni_logger_events_total{command="DEL",outcome="success"}', 1)
        assert prom.becomes('cni_logger_plugin_duration_seconds_count{command="ADD"}', 5)
        assert prom.value('cni_logger_plugin_duration_seconds_bucket{command="ADD",le="+Inf"}') == 5
        assert (prom.value('cni_logger_plugin_duration_seconds_sum{command="ADD"}') or 0) > 0

        # Events the plugin could not write: counted where they survive, put on the record by the watcher.
        for n in range(3):
            assert dropped.record(str(log), "ADD", f"lost-{n}") == ""
        assert prom.becomes(f'cni_logger_dropped_events_total{{log_file="{log}"}}', 3), (
            prom.query("cni_logger_dropped_events_total"), prom.query("cni_logger_dropped_events_pending"),
            [line for p in log.parent.iterdir() for line in p.read_text().splitlines() if "logger-dropped" in line])
        assert prom.value(f'cni_logger_dropped_events_pending{{log_file="{log}"}}') == 0

        st = os.statvfs(log.parent)
        size = prom.value(f'cni_logger_log_filesystem_size_bytes{{log_file="{log}"}}')
        assert size == st.f_blocks * st.f_frsize
        avail = prom.value(f'cni_logger_log_filesystem_avail_bytes{{log_file="{log}"}}')
        assert avail is not None and 0 < avail <= size

        # The plugin breaks: the failsafe takes it out, and the metrics and the shipped alert say so.
        tmp = layout.bin_dir / ".foreign"
        tmp.write_bytes(FOREIGN)
        tmp.chmod(0o755)
        os.replace(tmp, layout.launcher)
        assert prom.becomes(f'cni_logger_in_chain{{file="{conf}",network="cbr0"}}', 0)
        assert prom.becomes("cni_logger_ready", 0)
        assert prom.becomes(f'cni_logger_failsafe_removals_total{{file="{conf}"}}', 1)
        assert wait_for(lambda: (prom.value('cni_logger_self_checks_total{result="fail"}') or 0) >= 1)

        def alerting() -> set[str]:
            _, body = get(prom.url + "/api/v1/alerts")
            return {a["labels"]["alertname"] for a in json.loads(body)["data"]["alerts"]}
        assert wait_for(lambda: {"CNILoggerOutOfChain", "CNILoggerEventsNotWritten"} <= alerting()), alerting()
        status, body = get(prom.url + "/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        assert groups and all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
    finally:
        status, err = stop(watcher)
    assert status == 0, err
    assert any(line["event"]["action"] == "self-check-failed" for line in json_lines(err) if "event" in line), err


def test_metrics_are_off_by_default(layout: Layout) -> None:
    watcher = subprocess.Popen(layout.argv("install", "--watch", "--interval", "0.2", "--ready-file",
                                           str(layout.ready), "--log-file", str(layout.root / "audit.log")),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(layout.ready.exists)
        listening = Path(f"/proc/{watcher.pid}/net/tcp").read_text() + Path(f"/proc/{watcher.pid}/net/tcp6").read_text()
        sockets = {os.readlink(f"/proc/{watcher.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{watcher.pid}/fd")}
        assert not [s for s in sockets if s.startswith("socket:")], (sockets, listening)
    finally:
        status, err = stop(watcher)
    assert status == 0, err


def test_a_bad_metrics_address_is_refused(layout: Layout) -> None:
    for address in ("9740", "127.0.0.1:http", "127.0.0.1:70000"):
        proc = subprocess.run(layout.argv("install", "--watch", "--metrics-address", address), capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 1 and "--metrics-address" in proc.stderr, proc.stderr
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        proc = subprocess.run(layout.argv("install", "--watch", "--metrics-address", f"127.0.0.1:{port}"),
                              capture_output=True, text=True, timeout=60, check=False)
    finally:
        taken.close()
    assert proc.returncode == 1 and "cannot serve metrics" in proc.stderr, proc.stderr
    assert not layout.launcher.exists(), "refused before anything was installed"


def test_metrics_are_served_by_an_interpreter_without_ssl() -> None:
    """The bundle's interpreter has no ``_ssl`` (tests/system/test_bundle.py runs this in the bundle itself):
    prometheus_client, which imports ``ssl`` at its top, is imported anyway, serves, and leaves ``ssl`` missing
    and the standard modules that look for it as they were."""
    code = ("import sys; sys.modules['_ssl'] = None\n"  # import _ssl now fails, as in the bundle
            "import http.client, urllib.request\n"
            "before = (http.client, urllib.request)\n"
            "from cni_logger.install import metrics\n"
            "import http.client, urllib.request\n"
            "assert (http.client, urllib.request) == before and not hasattr(urllib.request, 'HTTPSHandler')\n"
            "assert 'ssl' not in sys.modules\n"
            f"m = metrics.Metrics('127.0.0.1:{free_port()}', '/nonexistent', 1, 1)\n"
            "m.start(); m.passed('pass', True, 1)\n"
            "body = urllib.request.urlopen(f'http://127.0.0.1:{m.server.server_port}/metrics').read().decode()\n"
            "print('cni_logger_ready 1.0' in body)\n"
            "try:\n    import ssl\nexcept ImportError:\n    print('no ssl')\n")
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["True", "no ssl"], proc.stdout


def test_the_rules_pass_promtool_check_and_their_tests() -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run(["promtool", "test", "rules", str(RULES_TEST)], capture_output=True, text=True,
                            timeout=300, cwd=RULES_DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_the_scrape_config_in_the_readme_is_valid(tmp_path: Path) -> None:
    """Debian's prometheus is built without Kubernetes discovery: the README's ``kubernetes_sd_configs`` is
    swapped for a static target, its relabelling checked as written."""
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    text = (RULES_DIR / "README.md").read_text()
    (block,) = [b.split("\n", 1)[1] for b in text.split("```")[1::2] if b.startswith("yaml")]
    discovery = "    kubernetes_sd_configs:\n      - role: pod\n        namespaces: {names: [cni-logger]}\n"
    assert discovery in block
    config = tmp_path / "prometheus.yml"
    config.write_text(block.replace(discovery, "    static_configs: [{targets: ['127.0.0.1:9740']}]\n")
                      + f"rule_files: [{RULES}]\n")
    check = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


# -- the liveness probe -----------------------------------------------------------------------------------


def passes(port: int) -> float:
    """The watcher's ``cni_logger_watch_passes_total``, read from its /metrics (-1: no answer)."""
    try:
        _, body = get(f"http://127.0.0.1:{port}/metrics")
    except OSError:
        return -1
    (line,) = [x for x in body.decode().splitlines() if x.startswith("cni_logger_watch_passes_total ")]
    return float(line.split()[1])


def has_logger(path: Path) -> bool:
    return any(p.get("type") == "logger" for p in json.loads(path.read_bytes())["plugins"])


def manifest_probe(kind: str) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")
    (ds,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d and d["kind"] == "DaemonSet"]
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    probe: dict[str, Any] = container[kind]
    return probe


def kubelet_probe(probe: dict[str, Any], port: int) -> bool:
    """The manifest's httpGet probe as the kubelet runs it: success is a status from 200 to 399 within
    ``timeoutSeconds`` (default 1); the port is the test's (the manifest names the container's)."""
    http = probe["httpGet"]
    try:
        status, _ = get(f"http://127.0.0.1:{port}{http['path']}", timeout=probe.get("timeoutSeconds", 1))
    except OSError:
        return False
    return 200 <= status < 400


def test_the_liveness_probe_fails_while_the_watcher_is_stopped_or_its_loop_is_stuck(layout: Layout) -> None:
    probe = manifest_probe("livenessProbe")
    port = free_port()
    watcher = watch(layout, port, "--check-timeout", "2")      # a pass is overdue after about 13 s
    lock = None
    try:
        assert wait_for(layout.ready.exists), "never ready"
        assert wait_for(lambda: kubelet_probe(probe, port))
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and body.startswith(b"ok"), body

        os.kill(watcher.pid, signal.SIGSTOP)                      # the whole process stuck
        assert not kubelet_probe(probe, port)                     # (stopped for longer than --interval)
        os.kill(watcher.pid, signal.SIGCONT)
        assert wait_for(lambda: kubelet_probe(probe, port))
        resumed = passes(port)
        assert wait_for(lambda: watcher.poll() is not None or passes(port) >= resumed + 2)
        assert watcher.poll() is None and has_logger(layout.conf), "a stop is no SIGTERM: the watcher goes on"

        # The loop stuck, the server still up: another installer holds the install lock (hung), and the agent
        # drops the entry, so the next pass has to write and waits for the lock.
        lock = os.open(layout.state / "install.lock", os.O_RDWR)
        fcntl.flock(lock, fcntl.LOCK_EX)
        layout.conf.write_bytes(layout.original)
        assert wait_for(lambda: not kubelet_probe(probe, port)), "the probe never failed"
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503 and b"stuck" in body, body
        fcntl.flock(lock, fcntl.LOCK_UN)
        assert wait_for(lambda: kubelet_probe(probe, port)), "not live again once the loop ran"
        assert wait_for(lambda: has_logger(layout.conf))
    finally:
        if lock is not None:
            os.close(lock)
        if watcher.poll() is None:
            os.kill(watcher.pid, signal.SIGCONT)
        status, err = stop(watcher)
    assert status == 0, err


def test_the_manifest_serves_metrics_and_probes_them() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")
    (ds,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d and d["kind"] == "DaemonSet"]
    pod = ds["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    (address,) = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--metrics-address=")]
    port = int(address.rsplit(":", 1)[1])
    # hostNetwork: the port is the node's; no `ports:` list (podman kube play refuses one with host networking).
    assert "ports" not in container
    for kind in ("livenessProbe", "startupProbe"):
        assert container[kind]["httpGet"] == {"path": "/healthz", "port": port}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)


def test_a_plugin_add_imports_nothing_of_the_watchers(tmp_path: Path) -> None:
    """``python -X importtime`` of an ADD started as the launcher starts it: neither prometheus_client nor the
    watcher's modules (the plugin's start-up time is the node's pod start-up time)."""
    from cni_logger.install import launcher

    config = {"cniVersion": "1.0.0", "name": "n", "type": "logger", "logFile": str(tmp_path / "cni.log"),
              "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}}
    code = f"import sys; sys.path.extend({launcher.import_paths()!r}); from cni_logger.cli import main; main()"
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-X", "importtime", "-I", "-S", "-c", code],
                          input=json.dumps(config).encode(), env=cni_env("ADD"), capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines() if "import time:" in line}
    assert "cni_logger.plugin" in imported and "cni_logger.events" in imported, "the plugin really ran"
    unwanted = {m for m in imported if m.split(".")[0] in ("prometheus_client", "wsgiref", "http", "socketserver")
                or m.startswith(("cni_logger.install", "cni_logger.audit"))}
    assert not unwanted, sorted(unwanted)
    assert (tmp_path / "cni.log").read_text().count("\n") == 1
