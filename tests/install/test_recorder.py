"""The recorder hook: every config file written or removed is told, with its reason, to the function the
integrator passes (the coverage events' writer): ``recorder(path, old, new, reason, since=None, detail=None)``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cni_logger.install import transaction
from cni_logger.install.apply import install_once, uninstall_once, withdraw
from cni_logger.install.content import logger_entry
from cni_logger.install.journal import StateLock, load_journal
from cni_logger.install.runtimes import RUNTIMES, Options
from cni_logger.install.watch import watch
from tests.harness.nodes import Node, shape

CONF = "10-flannel.conflist"


class Calls:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, path: str, old: bytes | None, new: bytes | None, reason: str, since: float | None = None,
                 detail: str | None = None) -> None:
        self.calls.append({"path": path, "old": old, "new": new, "reason": reason, "since": since,
                           "detail": detail})

    def take(self) -> list[tuple[str, str]]:
        found = [(Path(c["path"]).name, c["reason"]) for c in self.calls]
        self.calls.clear()
        return found


def options(node: Node) -> Options:
    entry = logger_entry("/var/log/cni/cni-logger.log")
    return Options(runtime=RUNTIMES["containerd"], conf_dir=str(node.net_d), bin_dir=str(node.bin_dir),
                   conf_file=None, network=None, entry=entry, state_dir=str(node.state_dir),
                   named=logger_entry(None))


def test_each_change_is_told_with_its_reason(node: Node) -> None:
    path = node.put(CONF)
    original = path.read_bytes()
    opts, record = options(node), Calls()

    assert install_once(opts, [], recorder=record)
    installed = path.read_bytes()
    assert [(c["old"], c["new"], c["since"]) for c in record.calls] == [(original, installed, None)]
    assert record.take() == [(CONF, "install")], "the launcher is not a config: not told"

    # An agent rewrites the file without the entry; --watch's next pass puts it back.
    agent = shape(CONF).replace(b'"hairpinMode": true', b'"hairpinMode": false')
    path.write_bytes(agent)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    assert install_once(opts, [], recorder=record, reason="agent-rewrite")
    assert record.calls[0]["since"] == 1_700_000_000, "since: the rewrite's time, the file's mtime as found"
    assert record.take() == [(CONF, "agent-rewrite")]

    reinserted = path.read_bytes()
    assert withdraw(opts, "VERSION exited with status 1", [], record) == (True, [])
    assert record.calls[0]["detail"] == "VERSION exited with status 1"
    assert (record.calls[0]["old"], record.calls[0]["new"]) == (reinserted, path.read_bytes())
    assert record.take() == [(CONF, "failsafe")]

    assert install_once(opts, [], recorder=record, reason="agent-rewrite")
    assert record.take() == [(CONF, "restored")]

    uninstall_once(opts.state_dir, keep_launcher=True, dry_run=False, notes=[], recorder=record, reason="shutdown")
    assert record.take() == [(CONF, "shutdown")]
    assert path.read_bytes() == agent

    assert install_once(opts, [], recorder=record)
    uninstall_once(opts.state_dir, keep_launcher=False, dry_run=False, notes=[], recorder=record)
    assert record.take() == [(CONF, "install"), (CONF, "uninstall")]
    assert path.read_bytes() == agent


def test_a_change_settled_by_the_next_pass_is_told_as_reconciled(node: Node) -> None:
    path = node.put(CONF)
    opts, record = options(node), Calls()
    assert install_once(opts, [])
    installed = path.read_bytes()
    # An uninstall written ahead, then interrupted before its first step.
    with StateLock(opts.state_dir):
        journal = load_journal(opts.state_dir)
        step = transaction.step_record(str(path), installed, shape(CONF), key=str(path))
        transaction.begin(opts.state_dir, journal, [step], {**journal, "configs": {}}, "uninstall", transaction.BACK)
    notes: list[str] = []
    install_once(opts, notes, recorder=record)
    assert record.take()[0] == (CONF, "reconciled")
    assert any(n.startswith("completed an interrupted change") for n in notes), notes


def test_watch_tells_install_and_shutdown(node: Node) -> None:
    path = node.put(CONF)
    opts, record = options(node), Calls()
    ready = node.root / "ready"
    main = threading.get_ident()

    def stop_when_ready() -> None:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        signal.pthread_kill(main, signal.SIGTERM)   # to the main thread, which watch() blocks it in

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stopper = threading.Thread(target=stop_when_ready)
    stopper.start()
    try:
        assert watch(opts, 0.1, str(ready), lambda notes: None, record) == 0
    finally:
        stopper.join()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert record.take() == [(CONF, "install"), (CONF, "shutdown")]
    assert path.read_bytes() == shape(CONF)


@pytest.fixture(autouse=True)
def _no_kill_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(transaction.KILL_ENV, raising=False)
