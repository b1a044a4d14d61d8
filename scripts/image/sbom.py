#!/usr/bin/env python3
"""The image's SBOM (SPDX 2.3 JSON), written by scripts/build-image.sh at build time from what goes into it.

    sbom.py --bundle TARBALL --dpkg-status FILE --base REF --image NAME --arch ARCH --output FILE

What the image holds, and so what the document lists:
  * the base image's Debian packages, read from its dpkg status file (installed ones only), as
    ``pkg:deb/debian/<name>@<version>?arch=<arch>`` purls;
  * the bundle (scripts/build-bundle.sh): its tarball's sha256 and BUILD_ID, the CPython it carries (the
    version of the source it was built from, read from its build configuration) and every Python
    distribution in its site-packages (name, version and license from the ``.dist-info/METADATA``), as
    ``pkg:pypi`` purls; the per-file sha256 of the bundle is its MANIFEST.sha256, which the entry point
    checks on every start, and the document records that file's own sha256;
  * the entry point script, with its sha256.

Only the standard library: it runs with the build host's /usr/bin/python3, before any image exists.
"""

from __future__ import annotations

import argparse
import datetime
import email.message
import email.parser
import hashlib
import json
import re
import tarfile
import uuid
from pathlib import Path
from typing import Any

NAMESPACE = "https://spdx.org/spdxdocs/cni-logger-image"
"""Prefix of the document namespace (SPDX asks for a unique URI; nothing is served there)."""


def spdx_id(*parts: str) -> str:
    """An SPDX element id: letters, digits, '.' and '-' only."""
    return "SPDXRef-" + re.sub(r"[^A-Za-z0-9.-]+", "-", "-".join(parts)).strip("-")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dpkg_packages(status: str) -> list[dict[str, str]]:
    """The installed packages of a dpkg status file (stanzas of RFC 822 fields), sorted by name."""
    packages = []
    for stanza in status.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if fields.get("Package") and fields.get("Status", "").endswith(" installed"):
            packages.append(fields)
    return sorted(packages, key=lambda p: p["Package"])


def bundle_contents(tarball: Path) -> dict[str, Any]:
    """BUILD_ID, the manifest's sha256, the CPython version and the Python distributions of a bundle."""
    dists: list[dict[str, str]] = []
    build_id = manifest_sha = python_version = ""
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = member.name
            if name.endswith("/BUILD_ID") and name.count("/") == 1:
                build_id = read_member(tar, member).decode().strip()
            elif name.endswith("/MANIFEST.sha256") and name.count("/") == 1:
                manifest_sha = hashlib.sha256(read_member(tar, member)).hexdigest()
            elif re.search(r"/lib/python3\.\d+/_sysconfigdata_[^/]*\.py$", name):
                found = re.search(rb"'abs_srcdir': '[^']*/Python-(\d+\.\d+\.\d+[^/']*)'", read_member(tar, member))
                python_version = found.group(1).decode() if found else ""
            elif re.search(r"/site-packages/[^/]+\.dist-info/METADATA$", name):
                meta = email.parser.Parser().parsestr(read_member(tar, member).decode("utf-8", "replace"))
                dists.append({"name": meta.get("Name", ""), "version": meta.get("Version", ""),
                              "license": declared_license(meta),
                              "homepage": meta.get("Home-page") or ""})
    if not build_id or not manifest_sha:
        raise SystemExit(f"sbom.py: {tarball} has no BUILD_ID or MANIFEST.sha256 at its top folder")
    if not python_version:
        raise SystemExit(f"sbom.py: {tarball}: cannot tell the CPython version from its build configuration")
    return {"build_id": build_id, "manifest_sha256": manifest_sha, "python": python_version,
            "dists": sorted(dists, key=lambda d: d["name"].lower())}


def declared_license(meta: email.message.Message) -> str:
    """License-Expression, or a License field that is one SPDX identifier (not a license's text), else NOASSERTION."""
    expression = meta.get("License-Expression")
    if expression:
        return str(expression)
    text = str(meta.get("License") or "")
    return text if re.fullmatch(r"[A-Za-z0-9.+-]{2,64}", text) else "NOASSERTION"


def read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    assert f is not None
    return f.read()


def document(args: argparse.Namespace) -> dict[str, Any]:
    bundle = bundle_contents(args.bundle)
    debs = dpkg_packages(args.dpkg_status.read_text(encoding="utf-8", errors="replace"))
    image_id = spdx_id("image", args.image)
    packages: list[dict[str, Any]] = [{
        "SPDXID": image_id, "name": args.image, "versionInfo": args.version,
        "primaryPackagePurpose": "CONTAINER", "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
        "comment": f"the cni-logger DaemonSet image ({args.arch}), built FROM {args.base}",
    }, {
        "SPDXID": spdx_id("bundle", bundle["build_id"]), "name": "cni-logger-bundle", "versionInfo": args.version,
        "primaryPackagePurpose": "ARCHIVE", "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
        "packageFileName": f"/bundle/{args.bundle.name}",
        "checksums": [{"algorithm": "SHA256", "checksumValue": sha256_file(args.bundle)}],
        "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
        "comment": (f"BUILD_ID {bundle['build_id']}; every file with its sha256 is in its MANIFEST.sha256 "
                    f"(sha256 {bundle['manifest_sha256']}), checked by the entry point on every start"),
    }, {
        "SPDXID": spdx_id("cpython", bundle["python"]), "name": "cpython", "versionInfo": bundle["python"],
        "supplier": "Organization: Python Software Foundation", "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False, "licenseConcluded": "NOASSERTION", "licenseDeclared": "Python-2.0",
        "copyrightText": "NOASSERTION", "comment": "built from Debian's python3.11 source package, in the bundle",
        "externalRefs": [purl(f"pkg:generic/cpython@{bundle['python']}")],
    }, {
        "SPDXID": spdx_id("entrypoint"), "name": "cni-logger-node", "versionInfo": args.version,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "packageFileName": "/usr/local/bin/cni-logger-node",
        "checksums": [{"algorithm": "SHA256", "checksumValue": sha256_file(args.entrypoint)}],
        "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
    }]
    inside_bundle = [spdx_id("cpython", bundle["python"])]
    for dist in bundle["dists"]:
        ident = spdx_id("pypi", dist["name"], dist["version"])
        inside_bundle.append(ident)
        packages.append({
            "SPDXID": ident, "name": dist["name"], "versionInfo": dist["version"],
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "licenseConcluded": "NOASSERTION",
            "licenseDeclared": dist["license"], "copyrightText": "NOASSERTION",
            "externalRefs": [purl(f"pkg:pypi/{dist['name'].lower().replace('_', '-')}@{dist['version']}")],
        })
    base_ids = []
    for deb in debs:
        ident = spdx_id("deb", deb["Package"], deb["Version"], deb.get("Architecture", ""))
        base_ids.append(ident)
        qualifiers = f"?arch={deb['Architecture']}" if deb.get("Architecture") else ""
        entry: dict[str, Any] = {
            "SPDXID": ident, "name": deb["Package"], "versionInfo": deb["Version"],
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
            "externalRefs": [purl(f"pkg:deb/debian/{deb['Package']}@{deb['Version']}{qualifiers}")],
            "comment": "from the base image's dpkg status",
        }
        if deb.get("Source"):
            entry["sourceInfo"] = f"Debian source package {deb['Source']}"
        packages.append(entry)
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": image_id}]
    for ident in [spdx_id("bundle", bundle["build_id"]), spdx_id("entrypoint"), *base_ids]:
        relationships.append({"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": ident})
    for ident in inside_bundle:
        relationships.append({"spdxElementId": spdx_id("bundle", bundle["build_id"]), "relationshipType": "CONTAINS",
                              "relatedSpdxElement": ident})
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{args.image}-{args.arch}",
        "documentNamespace": f"{NAMESPACE}/{args.version}-{args.arch}-{bundle['build_id']}-{uuid.uuid4()}",
        "creationInfo": {"created": created, "creators": ["Tool: cni-logger-scripts/build-image.sh"]},
        "documentDescribes": [image_id],
        "packages": packages,
        "relationships": relationships,
    }


def purl(locator: str) -> dict[str, str]:
    return {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": locator}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--dpkg-status", type=Path, required=True)
    parser.add_argument("--entrypoint", type=Path, required=True)
    parser.add_argument("--base", required=True, help="the base image reference (FROM)")
    parser.add_argument("--image", required=True, help="the image's name")
    parser.add_argument("--version", required=True)
    parser.add_argument("--arch", required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    args.output.write_text(json.dumps(document(args), indent=1) + "\n")


if __name__ == "__main__":
    main()
