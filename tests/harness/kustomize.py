"""A stand-in for ``kubectl kustomize`` on deploy/kubernetes (the base, its overlays and the node-paths component),
for machines without a kubectl: Debian's kubernetes-client is 1.20, whose kustomize predates components and
replacements. It does exactly what those files use, and refuses any other kustomization field:

* ``resources``: YAML files, and directories holding a kustomization.yaml (rendered first);
* ``components``: directories holding a ``kind: Component`` kustomization, applied in order after the resources;
* ``replacements``: a value from a resource (``source``: kind, name, fieldPath) into the fields of the selected
  resources (``targets``: select kind/name, fieldPaths with ``[key=value]`` and ``[=value]`` list selectors,
  ``options`` delimiter/index); a field that is not there is an error, as in kustomize;
* resources annotated ``config.kubernetes.io/local-config: "true"`` are left out of the output.

tests/system/install/test_kubernetes.py checks it against ``kubectl kustomize`` wherever kubectl is installed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

FIELDS = {"apiVersion", "kind", "resources", "components", "replacements"}
LOCAL_CONFIG = "config.kubernetes.io/local-config"


def render(path: Path) -> list[dict[str, Any]]:
    """The documents ``kubectl kustomize path`` prints (in the kustomization's order, not sorted by kind)."""
    return [d for d in _build(path) if (d.get("metadata", {}).get("annotations") or {}).get(LOCAL_CONFIG) != "true"]


def _kustomization(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((path / "kustomization.yaml").read_text())
    unknown = set(doc) - FIELDS
    if unknown:
        raise ValueError(f"{path}/kustomization.yaml: {sorted(unknown)} not supported by this stand-in")
    return doc


def _build(path: Path) -> list[dict[str, Any]]:
    kustomization = _kustomization(path)
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        target = path / resource
        if target.is_dir():
            docs += _build(target)
        else:
            docs += [d for d in yaml.safe_load_all(target.read_text()) if d]
    for component in kustomization.get("components", []):
        spec = _kustomization(path / component)
        if spec.get("kind") != "Component" or spec.get("resources") or spec.get("components"):
            raise ValueError(f"{path / component}: only a Component with replacements is supported")
        _replace(docs, spec.get("replacements", []))
    _replace(docs, kustomization.get("replacements", []))
    return docs


def _selected(doc: dict[str, Any], select: dict[str, str]) -> bool:
    return all(doc.get("kind") == v if k == "kind" else doc.get("metadata", {}).get(k) == v for k, v in select.items())


def _replace(docs: list[dict[str, Any]], replacements: list[dict[str, Any]]) -> None:
    for replacement in replacements:
        source = replacement["source"]
        (origin,) = [d for d in docs if _selected(d, {k: source[k] for k in ("kind", "name") if k in source})]
        value = _get(origin, source["fieldPath"])
        for target in replacement["targets"]:
            chosen = [d for d in docs if _selected(d, target["select"])]
            if not chosen:
                raise ValueError(f"no resource matches {target['select']}")
            for doc in chosen:
                for field in target["fieldPaths"]:
                    _set(doc, field, value, target.get("options", {}))


def _tokens(field: str) -> list[str]:
    return re.findall(r"\[[^\]]*\]|[^.]+", field)


def _step(node: Any, token: str, field: str) -> tuple[Any, Any]:
    """(container, key or index) of ``token`` in ``node``."""
    if token.startswith("["):
        key, _, wanted = token[1:-1].partition("=")
        if not isinstance(node, list):
            raise ValueError(f"{field}: {token} selects in a list")
        for i, item in enumerate(node):
            if (item == wanted) if key == "" else (isinstance(item, dict) and str(item.get(key)) == wanted):
                return node, i
        raise ValueError(f"unable to find field {field!r} ({token})")
    if isinstance(node, list) and token.isdigit():
        return node, int(token)
    if not isinstance(node, dict) or token not in node:
        raise ValueError(f"unable to find field {field!r} ({token})")
    return node, token


def _get(doc: Any, field: str) -> Any:
    node = doc
    for token in _tokens(field):
        container, key = _step(node, token, field)
        node = container[key]
    return node


def _set(doc: Any, field: str, value: Any, options: dict[str, Any]) -> None:
    *path, last = _tokens(field)
    node = doc
    for token in path:
        container, key = _step(node, token, field)
        node = container[key]
    container, key = _step(node, last, field)
    if "delimiter" in options:
        parts = str(container[key]).split(options["delimiter"])
        parts[int(options.get("index", 0))] = str(value)
        value = options["delimiter"].join(parts)
    container[key] = value
