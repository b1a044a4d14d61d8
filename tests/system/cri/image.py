"""The pod sandbox image, built locally: no registry is reachable (or wanted) in the test.

``pause.c`` is compiled with ``gcc -static`` and put as ``/pause`` into a single-layer OCI image, written by
hand as an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/<digest>`` for the layer, the
config and the manifest, each referenced with its exact sha256 digest and size) and packed into a tar that
``ctr images import`` accepts. containerd names the image after the index's ``io.containerd.image.name``
annotation, which is what the private config's ``sandbox_image`` names.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import subprocess
import tarfile
from pathlib import Path
from typing import Any

PAUSE_SOURCE = Path(__file__).with_name("pause.c")
IMAGE_NAME = "localhost/cni-logger-test/pause:1"
"""Never pulled (no registry has it): if containerd tried to pull it, the test would fail loudly."""
_EPOCH = 0
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def build_pause(out: Path) -> Path:
    """Compile pause.c into a static, stripped executable at ``out``."""
    subprocess.run(["gcc", "-static", "-s", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out),
                    str(PAUSE_SOURCE)], check=True, capture_output=True, timeout=120)
    return out


def _layer_tar(pause: Path) -> bytes:
    """An uncompressed layer holding only ``/pause`` (root-owned, 0755, fixed mtime: reproducible)."""
    data = pause.read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("pause")
        info.size = len(data)
        info.mode = 0o755
        info.mtime = _EPOCH
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(), "size": len(blob)}


def oci_archive(pause: Path, out: Path) -> Path:
    """Write the OCI image layout of the pause image as a tar at ``out`` and return it."""
    arch = _GOARCH.get(platform.machine(), platform.machine())
    layer = _layer_tar(pause)
    layer_desc = _descriptor("application/vnd.oci.image.layer.v1.tar", layer)
    config = _canonical({
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},  # uncompressed: diff id = digest
        "history": [{"created_by": "tests/system/cri/image.py", "comment": "static pause.c"}],
    })
    config_desc = _descriptor("application/vnd.oci.image.config.v1+json", config)
    manifest = _canonical({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    })
    manifest_desc = _descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
    manifest_desc["platform"] = {"architecture": arch, "os": "linux"}
    manifest_desc["annotations"] = {"io.containerd.image.name": IMAGE_NAME,
                                    "org.opencontainers.image.ref.name": IMAGE_NAME.rsplit(":", 1)[1]}
    index = _canonical({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [manifest_desc]})
    files: list[tuple[str, bytes]] = [("oci-layout", _canonical({"imageLayoutVersion": "1.0.0"})),
                                      ("index.json", index)]
    for blob in (layer, config, manifest):
        files.append(("blobs/sha256/" + hashlib.sha256(blob).hexdigest(), blob))
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = _EPOCH
            tar.addfile(info)
        for name, blob in files:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            info.mode = 0o644
            info.mtime = _EPOCH
            tar.addfile(info, io.BytesIO(blob))
    return out
