"""Who else runs a launcher: the registry of installs kept beside it, and the configs that name it.

One bin dir can serve several installs (several state dirs, each with its own conf dir: a runtime per
conf dir, a test cluster beside a real one, a re-install under another ``--state-dir``). Each journal
records the launcher, so without more, the first ``uninstall`` removes it and every other network whose
chain names ``logger`` fails every ADD and DEL (``failed to find plugin "logger"``). The rule is therefore:
no launcher is removed while any config in the known conf dirs names it, whatever state dir recorded it.

The known conf dirs of a bin dir (``known_conf_dirs``) are the conf dirs of the runtimes whose default bin dir
it is (``runtimes.RUNTIMES``), those of the uninstalling journal, and those every install registered in
``<bin dir>/.logger.cni-logger-users`` (``REGISTRY_NAME``): JSON ``{"installs": {"<state dir>": ["<conf dir>",
...]}}``, mode 0644, written by install (when it changes) and updated by uninstall. The registry sits beside
the launcher because that is the one place every install sharing it knows; a runtime executes a plugin
by its type name only, so a dotfile in the bin dir is never executed.

A config names the launcher (``configs_naming``) when it holds a ``type: logger`` entry (in its plugin list,
or as its own type: rkt). A file that cannot be parsed (half-written, say) but mentions ``"logger"`` counts
too: keeping a launcher costs nothing, removing a needed one stops a network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

from cni_logger.install.content import has_logger
from cni_logger.install.runtimes import LOGGER_TYPE, RUNTIMES

REGISTRY_NAME = f".{LOGGER_TYPE}.cni-logger-users"
CONFIG_EXTENSIONS = (".conf", ".conflist", ".json")
"""Every extension some runtime loads (``runtimes.RUNTIMES``)."""


def registry_path(bin_dir: str) -> str:
    return os.path.join(bin_dir, REGISTRY_NAME)


def load(bin_dir: str) -> dict[str, list[str]]:
    """The registered installs: state dir -> its conf dirs ({} when there is no registry, or it is unreadable)."""
    try:
        with open(registry_path(bin_dir), "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    installs = doc.get("installs") if isinstance(doc, dict) else None
    if not isinstance(installs, dict):
        return {}
    return {state: [d for d in dirs if isinstance(d, str)] for state, dirs in installs.items()
            if isinstance(state, str) and isinstance(dirs, list)}


def render(installs: Mapping[str, Iterable[str]]) -> bytes:
    doc = {"installs": {state: sorted(set(dirs)) for state, dirs in sorted(installs.items())}}
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def known_conf_dirs(bin_dir: str, own: Iterable[str], installs: Mapping[str, Iterable[str]]) -> list[str]:
    """The conf dirs whose configs a runtime runs from ``bin_dir`` as far as anyone recorded (module docstring)."""
    found: list[str] = []
    here = os.path.abspath(bin_dir)
    defaults = [r.conf_dir for r in RUNTIMES.values() if os.path.abspath(r.bin_dir) == here]
    for directory in [*defaults, *own, *(d for dirs in installs.values() for d in dirs)]:
        directory = os.path.abspath(directory)
        if directory not in found:
            found.append(directory)
    return found


def configs_naming(conf_dirs: Iterable[str], planned: Mapping[str, bytes | None]) -> list[tuple[str, str | None]]:
    """``(file, network name)`` of every config in ``conf_dirs`` that names the logger once ``planned`` is done
    (path -> its new content, None: removed); files not in ``planned`` as they are now."""
    found: list[tuple[str, str | None]] = []
    for directory in conf_dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        paths = [os.path.join(directory, n) for n in names if n.endswith(CONFIG_EXTENSIONS)]
        paths += [p for p in planned if os.path.dirname(p) == directory and p not in paths
                  and p.endswith(CONFIG_EXTENSIONS)]
        for path in paths:
            if path in planned:
                data = planned[path]
                if data is None:
                    continue
            else:
                try:
                    with open(path, "rb") as f:  # a symlinked config is loaded through its link: follow it
                        data = f.read()
                except OSError:
                    continue  # a directory, a dangling link: nothing a runtime loads
            try:
                doc = json.loads(data)
            except (ValueError, RecursionError):
                if b'"' + LOGGER_TYPE.encode() + b'"' in data:
                    found.append((path, None))
                continue
            if has_logger(doc):
                name = doc.get("name") if isinstance(doc, dict) else None
                found.append((path, name if isinstance(name, str) else None))
    return found
