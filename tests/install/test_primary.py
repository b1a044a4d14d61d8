"""Install never changes which network the runtime uses.

Turning ``NAME.conf`` (or ``NAME.json``) into ``NAME.conflist`` moves the file in the runtime's
lexicographic order: ``NAME.conf.json``, ``NAME.conf-old.json``... sort between ``NAME.conf`` and
``NAME.conflist`` ('.' and '-' come before 'l'), so after the rename the runtime would take another
network — or, for containerd, stop at a file it cannot load. Install checks the planned directory with
the runtime's own rule and refuses, writing nothing, when the network it picks would change.
"""

from __future__ import annotations

import pytest

from tests.harness.nodes import Node, shape

NET = '{"cniVersion": "1.0.0", "name": "net", "type": "bridge"}\n'
OTHER = '{"cniVersion": "1.0.0", "name": "other", "type": "ptp"}\n'
OTHER_LIST = '{"cniVersion": "1.0.0", "name": "other", "plugins": [{"type": "ptp"}]}\n'


@pytest.mark.parametrize("runtime", ["containerd", "crio"])
@pytest.mark.parametrize("between", ["10-net.conf.json", "10-net.conf-old.json", "10-net.conf_2.conflist",
                                     "10-net.confa.conflist", "10-net.confl.json"])
def test_a_conversion_that_would_let_another_network_sort_first_is_refused(
        node: Node, runtime: str, between: str) -> None:
    node.put("10-net.conf", NET)
    node.put(between, OTHER_LIST if between.endswith(".conflist") else OTHER)
    snapshot = node.snapshot()
    status, out, err = node.install("--runtime", runtime)
    assert status == 1, err
    assert "refused:" in err and between in err and "network 'other'" in err, err
    assert out == ""
    assert node.snapshot() == snapshot, "nothing written, not even the launcher"


def test_dry_run_refuses_too(node: Node) -> None:
    node.put("10-net.conf", NET)
    node.put("10-net.conf.json", OTHER)
    status, out, err = node.install("--dry-run")
    assert (status, out) == (1, "") and "10-net.conf.json" in err


def test_a_named_json_that_would_sort_before_the_primary_is_refused(node: Node) -> None:
    """--conf-file 05-net.json: as 05-net.conflist it sorts before 05-net.d.conflist, the runtime's choice."""
    node.put("05-net.d.conflist", shape("10-flannel.conflist"))
    node.put("05-net.json", OTHER)
    snapshot = node.snapshot()
    status, _, err = node.install("--conf-file", "05-net.json")
    assert status == 1, err
    assert "05-net.d.conflist" in err and "network 'other'" in err and "05-net.conflist" in err, err
    assert node.snapshot() == snapshot


def test_containerd_refuses_when_a_file_it_cannot_load_would_sort_first(node: Node) -> None:
    """containerd stops at the first file it cannot load; CRI-O skips it, so there the install is fine."""
    node.put("10-net.conf", NET)
    node.put("10-net.conf.json", '{"cniVersion": "1.0.0", "name": ')
    snapshot = node.snapshot()
    status, _, err = node.install()
    assert status == 1, err
    assert "10-net.conf.json" in err and "cannot load" in err, err
    assert node.snapshot() == snapshot
    status, _, err = node.install("--runtime", "crio")
    assert status == 0, err
    assert node.doc("10-net.conflist")["plugins"][-1]["type"] == "logger"


def test_conversions_that_keep_the_order_still_install(node: Node) -> None:
    """The usual layouts: other files sort after NAME.conflist, or before NAME.conf."""
    node.put("05-aaa.conf.bak", OTHER)
    node.put("10-net.conf", NET)
    node.put("10-net.conflist.d.json", OTHER)
    node.put("10-neu.conf", OTHER)
    status, _, err = node.install()
    assert status == 0, err
    assert node.doc("10-net.conflist")["plugins"][-1]["type"] == "logger"
