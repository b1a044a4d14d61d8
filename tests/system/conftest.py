"""Fixtures for system tests: cnitool sandboxes without the logger, a private containerd with its CRI client.

The ``cni-logger`` the system tests install, uninstall and query with is ``cni_logger_cli`` from
tests/conftest.py: the relocatable bundle's ``bin/cni-logger`` (so the plugin containerd runs is the
launcher on the bundle's interpreter), or another install's with CNI_LOGGER_CLI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cnitool import CniSandbox, environment_problem, opened_sandbox
from tests.system.cri import image
from tests.system.cri.client import GeneratedCode, compile_proto
from tests.system.cri.containerd import PrivateContainerd, unavailable_reason

NETWORK = f"cnilcri-net-{os.getpid()}"
"""The primary network's name: unique to this test run, since libcni's result cache (/var/lib/cni/results)
is shared by every runtime on the machine, keyed by it, and cleaned up by it."""
BRIDGE = "cnilcri0"
SUBNET = "10.99.71.0/24"
"""The bridge and subnet exist only in the private containerd's host network namespace."""


@pytest.fixture
def bare_sandbox(tmp_path: Path) -> Iterator[CniSandbox]:
    """Namespaces + a CNI bin dir (system plugins + Go debug plugin) without the logger: a test, or
    ``cni-logger install``, puts it there."""
    problem = environment_problem()
    if problem:
        pytest.skip(problem)
    with opened_sandbox(tmp_path, None) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def cri_code(tmp_path_factory: pytest.TempPathFactory) -> GeneratedCode:
    """The minimal CRI proto, compiled for this session (nothing generated is committed)."""
    problem = unavailable_reason()
    if problem:
        pytest.skip(problem)
    return compile_proto(tmp_path_factory.mktemp("cri-proto"))


@pytest.fixture(scope="session")
def pause_image_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sandbox image as an OCI-layout tar, built from pause.c (no registry involved)."""
    problem = unavailable_reason()
    if problem:
        pytest.skip(problem)
    work = tmp_path_factory.mktemp("pause-image")
    return image.oci_archive(image.build_pause(work / "pause"), work / "pause-oci.tar")


def primary_conflist(ipam_dir: Path) -> dict[str, Any]:
    """The node's network before cni-logger: bridge + host-local + portmap, as a CNI add-on would write it.

    host-local's ``dataDir`` is private (its default /var/lib/cni/networks is shared by the machine).
    """
    return {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(ipam_dir)}},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }


@pytest.fixture
def private_containerd(tmp_path: Path, cri_code: GeneratedCode, pause_image_archive: Path,
                       ) -> Iterator[PrivateContainerd]:
    """A running private containerd whose conf dir holds the primary network, with the pause image imported.

    Teardown stops and removes any sandbox still there, stops containerd and its shims, and removes what
    they left outside the temporary directory; it fails the test if something could not be removed.
    """
    ctd = PrivateContainerd(tmp_path / "containerd", tag=f"cnilcri{os.getpid()}", sandbox_image=image.IMAGE_NAME)
    ctd.networks.append(NETWORK)
    try:
        ctd.prepare()
        conflist = ctd.conf_dir / "10-cnilcri.conflist"
        conflist.write_text(json.dumps(primary_conflist(tmp_path / "ipam"), indent=2) + "\n")
        ctd.start(cri_code)
        ctd.import_image(pause_image_archive)
        yield ctd
    finally:
        problems = ctd.cleanup()
    assert not problems, f"could not clean up the private containerd: {problems}"
