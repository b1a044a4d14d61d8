"""The thick-mode shim: finding the built binary, writing its configuration into it, reading it back.

The shim (``shim/cni-logger-shim.c``) is the small static executable a runtime runs as ``logger`` in thick
mode: it forwards each request to the agent of ``install --watch --agent`` over a unix socket, and execs
the in-process plugin when the agent cannot answer. It is on every pod's start path, so it reads no file
to learn where the socket is or which interpreter to fall back to: the installer patches those into the
binary itself, in a fixed-size *config area* the C source reserves (``cni_logger_shim_config``: the
``MARKER`` line, then ``key=value\\0`` entries ended by an empty entry, zeros after). That keeps the plugin
one file, replaced atomically like the launcher (``atomicfile``), which the self-check executes exactly as
the runtime will, with no extra syscalls on the pod's start path and no second file that could be missing,
stale or half-written when the runtime runs it.

``configure`` returns a copy of the built binary with the area rewritten whole (so a configured shim can be
configured again); ``read_config`` and ``is_shim`` serve uninstall and the self-check, which must know a
bin-dir file for a shim of ours before touching it.
"""

from __future__ import annotations

import os
import sys

from cni_logger.install import Refusal

MARKER = b"CNI-LOGGER-SHIM-CONFIG/1\n"
"""The first line of the config area (25 bytes); it occurs exactly once in a built shim."""
CONFIG_SIZE = 8192
"""The config area's size in bytes, marker included (``char cni_logger_shim_config[8192]`` in the C source)."""
ELF_MAGIC = b"\x7fELF"
SUN_PATH_MAX = 107
"""The longest unix socket path connect() takes (``sun_path`` is 108 bytes, its NUL included)."""
MAX_MS = 86_400_000
"""The largest timeout the shim accepts (a day); it ignores a larger or malformed one for its default."""
KEYS = ("socket", "python", "program", "connect_ms", "reply_ms", "stdin_ms")


class ShimError(Refusal):
    """A binary that is not a shim of this version, or a configuration it cannot carry; the message says what to do."""


def shim_path(prefix: str | None = None) -> str:
    """Where the built shim lives beside an installation: ``<prefix>/libexec/cni-logger-shim``.

    The bundle (scripts/bundle/assemble.sh) and a virtualenv (scripts/build-shim.sh via setup-system.sh)
    both put it there, so ``sys.prefix`` finds it from whichever interpreter runs the installer.
    """
    return os.path.join(prefix if prefix is not None else sys.prefix, "libexec", "cni-logger-shim")


def read_binary(path: str | None = None) -> bytes:
    """The built shim to install (``path``, default ``shim_path()``). Raises ``launcher.LauncherError`` when it
    cannot be read: like a launcher's missing package, the installation is incomplete (under ``--watch``, its
    folder damaged since start), which the self-check's failsafe handles."""
    from cni_logger.install.launcher import LauncherError

    where = path or shim_path()
    try:
        with open(where, "rb") as f:
            return f.read()
    except OSError as exc:
        raise LauncherError(f"the shim {where} cannot be read ({exc.strerror or exc}): thick mode needs it beside the "
                            "installation (scripts/build-shim.sh builds it; the bundle has it in libexec/), or name "
                            "one with --shim") from None


def _area(data: bytes, what: str) -> int:
    """The offset of the config area in ``data``, after checking it is an ELF file holding exactly one."""
    if data[:4] != ELF_MAGIC:
        raise ShimError(f"{what} is not an ELF executable: build the shim with scripts/build-shim.sh --out PATH")
    count = data.count(MARKER)
    if count == 0:
        raise ShimError(f"{what} has no config area ({MARKER!r}): it is not a cni-logger shim of this version; "
                        "rebuild it from shim/cni-logger-shim.c with scripts/build-shim.sh")
    if count > 1:
        raise ShimError(f"{what} holds the config marker {count} times, so the area to patch is ambiguous; "
                        "rebuild it from shim/cni-logger-shim.c with scripts/build-shim.sh")
    at = data.index(MARKER)
    if at + CONFIG_SIZE > len(data):
        raise ShimError(f"{what} ends {at + CONFIG_SIZE - len(data)} bytes inside its config area (a truncated "
                        "file?); rebuild it with scripts/build-shim.sh")
    return at


def is_shim(data: bytes) -> bool:
    """Whether ``data`` is a cni-logger shim: an ELF file holding the config marker."""
    return data[:4] == ELF_MAGIC and MARKER in data


def _value(key: str, value: str) -> bytes:
    encoded = os.fsencode(value)
    if b"\0" in encoded:
        raise ShimError(f"the shim's {key} contains a NUL byte, which ends an entry of its config area: "
                        f"{value!r}")
    if MARKER.rstrip(b"\n") in encoded:
        raise ShimError(f"the shim's {key} contains the config marker {MARKER!r}, which must occur exactly once in "
                        "the binary (the next install could not find its config area)")
    if key in ("socket", "python") and not encoded.startswith(b"/"):
        raise ShimError(f"the shim's {key} must be an absolute path (the runtime runs the shim from any "
                        f"directory), not {value!r}")
    if not encoded:
        raise ShimError(f"the shim's {key} is empty")
    return encoded


def configure(binary: bytes, *, socket: str, python: str, program: str, connect_ms: int = 200,
              reply_ms: int = 3000, stdin_ms: int = 2000) -> bytes:
    """``binary`` (a built, configured or not, shim) with its config area rewritten for these values.

    ``socket`` is the agent's unix socket, ``python`` the interpreter the fallback execs as
    ``python -IS -c program ID REASON MAYBE PREFIX``, and the timeouts are the shim's: ``connect_ms``
    from connect() to the agent's greeting, ``reply_ms`` for sending the request and reading the whole
    reply, ``stdin_ms`` for stdin's EOF. Raises ``ShimError`` for anything the shim would not read as
    given: the shim itself never reports a bad entry (it has nowhere to), it falls back or ignores it.
    """
    at = _area(binary, "the shim binary")
    values = {"socket": _value("socket", socket), "python": _value("python", python),
              "program": _value("program", program)}
    if len(values["socket"]) > SUN_PATH_MAX:
        raise ShimError(f"the agent's socket path is {len(values['socket'])} bytes, more than a unix socket "
                        f"address holds ({SUN_PATH_MAX}): choose a shorter socket path")
    for key, ms in (("connect_ms", connect_ms), ("reply_ms", reply_ms), ("stdin_ms", stdin_ms)):
        if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= MAX_MS:
            raise ShimError(f"the shim's {key} must be a whole number of milliseconds from 0 to {MAX_MS}, "
                            f"not {ms!r}")
        values[key] = str(ms).encode()
    entries = b"".join(key.encode() + b"=" + values[key] + b"\0" for key in KEYS) + b"\0"
    room = CONFIG_SIZE - len(MARKER)
    if len(entries) > room:
        raise ShimError(f"the shim's configuration is {len(entries)} bytes, more than its config area holds "
                        f"({room}): shorten the fallback program or the paths")
    area = MARKER + entries + bytes(room - len(entries))
    return binary[:at] + area + binary[at + CONFIG_SIZE:]


def read_config(data: bytes) -> dict[str, str]:
    """The entries of a shim's config area (``{}`` for a shim not configured yet).

    Read as the shim reads them: up to the first empty entry, an entry without ``=`` skipped, the last
    of a repeated key kept. Raises ``ShimError`` when ``data`` is not a shim.
    """
    at = _area(data, "the file")
    area = data[at + len(MARKER):at + CONFIG_SIZE]
    config: dict[str, str] = {}
    for entry in area.split(b"\0")[:-1]:   # the last piece is not NUL-ended: the shim ignores it
        if not entry:
            break
        key, eq, value = entry.partition(b"=")
        if eq:
            config[os.fsdecode(key)] = os.fsdecode(value)
    return config
