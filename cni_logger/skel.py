"""The CNI protocol skeleton: environment, stdin, version checks, dispatch and the one JSON answer.

This module knows the CNI specification (0.1.0 to 1.1.0) and nothing about logging. It mirrors the
Go ``pkg/skel`` of the reference plugins: a plugin supplies one callable per operation and a
``finish`` hook, and the skeleton turns the runtime's environment and stdin into a ``Request``,
refuses bad input with the spec's error object, and writes exactly one JSON document to stdout.

It imports only what every invocation needs (``os``, ``sys``, ``time``, ``select`` and the C JSON
accelerator through ``jsonio``), so VERSION and STATUS are answered without loading ``json``, ``re``
or the event pipeline.
"""

from __future__ import annotations

import os
import select
import sys
import time

from cni_logger import jsonio

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:  # typing costs start-up time on the VERSION / STATUS path; annotations are strings
    from collections.abc import Callable, Mapping
    from typing import Any, Protocol
else:
    Protocol = object

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]
COMMANDS: tuple[str, ...] = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")

# Error codes with their meaning in the spec (SPEC.md section 5 and the 1.1.0 STATUS additions).
ERR_INCOMPATIBLE_VERSION = 1
ERR_INVALID_ENVIRONMENT = 4
ERR_IO_FAILURE = 5
ERR_DECODING_FAILURE = 6
ERR_INVALID_NETWORK_CONFIG = 7
ERR_TRY_AGAIN_LATER = 11
ERR_PLUGIN_NOT_AVAILABLE = 50
ERR_LIMITED_CONNECTIVITY = 51

MAX_STDIN_BYTES = 16 * 1024 * 1024
"""Larger network configs are refused: no real config comes close, and reading must stay bounded."""
STDIN_TIMEOUT_SECONDS = 10.0
"""A runtime writes the whole config and closes stdin at once; waiting longer than this is a bug."""

# Environment each command needs (SPEC.md section 2; CNI_PATH is optional everywhere except GC,
# where real runtimes may still send it empty, so it is never required).
_REQUIRED_ENV: Mapping[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": (),
    "STATUS": (),
    "VERSION": (),
}
_MIN_VERSION: Mapping[str, str] = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")


class CNIError(Exception):
    """An error the plugin reports to the runtime as the spec's error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return doc

    def __str__(self) -> str:
        return f"{self.msg}; {self.details}" if self.details else self.msg


class Request:
    """One invocation as the runtime made it: environment values, raw stdin and the parsed config.

    Fields are filled as far as parsing got, so a failed invocation can still be recorded with
    everything that was known about it. (A plain class: ``dataclasses`` imports ``inspect``.)
    """

    __slots__ = ("args", "cni_version", "command", "config", "container_id", "ifname", "netns",
                 "path", "started_monotonic_ns", "started_ns", "stdin", "traceparent")

    def __init__(self, command: str, container_id: str = "", netns: str = "", ifname: str = "",
                 args: str = "", path: str = "", traceparent: str = "") -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args = args
        self.path = path
        self.traceparent = traceparent
        self.stdin = b""
        self.config: dict[str, Any] | None = None
        self.cni_version = LATEST_VERSION
        self.started_ns = time.time_ns()
        self.started_monotonic_ns = time.monotonic_ns()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Request:
        return cls(
            command=environ.get("CNI_COMMAND", ""),
            container_id=environ.get("CNI_CONTAINERID", ""),
            netns=environ.get("CNI_NETNS", ""),
            ifname=environ.get("CNI_IFNAME", ""),
            args=environ.get("CNI_ARGS", ""),
            path=environ.get("CNI_PATH", ""),
            traceparent=environ.get("TRACEPARENT", ""),
        )

    @property
    def network_name(self) -> str:
        name = (self.config or {}).get("name")
        return name if isinstance(name, str) else ""


class Outcome:
    """What the plugin answers: a result document (ADD, VERSION), nothing, or an error.

    ``suppressed`` holds an error that DEL swallowed: DEL must succeed, but the audit trail still
    says what was wrong with the request.
    """

    __slots__ = ("error", "result", "suppressed")

    def __init__(self, result: dict[str, Any] | None = None, error: CNIError | None = None,
                 suppressed: CNIError | None = None) -> None:
        self.result = result
        self.error = error
        self.suppressed = suppressed

    @property
    def ok(self) -> bool:
        return self.error is None


class Plugin(Protocol):
    """The operations a plugin implements on top of the skeleton."""

    def add(self, request: Request) -> dict[str, Any]: ...
    def check(self, request: Request) -> None: ...
    def delete(self, request: Request) -> None: ...
    def gc(self, request: Request) -> None: ...
    def status(self, request: Request) -> None: ...
    def finish(self, request: Request, outcome: Outcome) -> Outcome:
        """Called once per invocation before the answer is written; may replace the outcome."""
        ...


def version_tuple(version: str) -> tuple[int, ...]:
    """``"0.3.1"`` -> ``(0, 3, 1)``; anything unparsable sorts below every real version."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (-1,)


def parse_cni_args(raw: str) -> dict[str, str]:
    """``CNI_ARGS`` as a mapping: ``K=V`` pairs split on ``;`` in any order.

    Real runtimes send odd pairs, so this is lenient where Go's ``types.LoadArgs`` is strict: a value
    may contain ``=`` (``A=b=c`` gives ``A`` -> ``b=c``), a bare ``FLAG`` maps to ``""``, empty pairs
    are skipped, and a repeated key keeps its last value.
    """
    pairs: dict[str, str] = {}
    for item in raw.split(";"):
        key, _, value = item.partition("=")
        key = key.strip()
        if key:
            pairs[key] = value
    return pairs


def read_stdin(fd: int, limit: int = MAX_STDIN_BYTES, timeout: float = STDIN_TIMEOUT_SECONDS) -> bytes:
    """Read all of stdin, refusing more than ``limit`` bytes and giving up after ``timeout`` seconds."""
    if os.isatty(fd):
        raise CNIError(ERR_IO_FAILURE, "stdin is a terminal", "pipe the network configuration to the plugin")
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            ready, _, _ = select.select([fd], [], [], max(remaining, 0))
        except (OSError, ValueError) as exc:  # fd closed or not selectable: read once, blocking
            ready = [fd] if not isinstance(exc, ValueError) else []
            if not ready:
                raise CNIError(ERR_IO_FAILURE, "error reading from stdin", str(exc)) from exc
        if not ready:
            raise CNIError(
                ERR_IO_FAILURE, "error reading from stdin",
                f"no end of input after {timeout:g} seconds; the runtime must close stdin",
            )
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError as exc:
            raise CNIError(ERR_IO_FAILURE, "error reading from stdin", str(exc)) from exc
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise CNIError(
                ERR_INVALID_NETWORK_CONFIG, "network configuration too large",
                f"more than {limit} bytes on stdin",
            )
        chunks.append(chunk)


def decode_config(data: bytes) -> dict[str, Any]:
    """Parse the network configuration JSON object from stdin (code 6 when it is not one)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CNIError(ERR_DECODING_FAILURE, "error decoding network config", f"invalid UTF-8: {exc}") from exc
    try:
        config = jsonio.loads(text)
    except RecursionError as exc:
        raise CNIError(ERR_DECODING_FAILURE, "error decoding network config", "JSON nested too deeply") from exc
    except ValueError as exc:
        raise CNIError(ERR_DECODING_FAILURE, "error decoding network config", str(exc)) from exc
    if not isinstance(config, dict):
        raise CNIError(
            ERR_DECODING_FAILURE, "error decoding network config",
            f"expected a JSON object, got {type(config).__name__}",
        )
    return config


def config_version(config: Mapping[str, Any]) -> str:
    """The config's ``cniVersion``; absent or empty means 0.1.0, as in libcni."""
    version = config.get("cniVersion", "")
    if version in ("", None):
        return "0.1.0"
    if not isinstance(version, str):
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, "invalid cniVersion", f"expected a string, got {version!r}")
    return version


def _check_name(kind: str, value: str, code: int) -> None:
    """Container ids and network names: ``^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$`` as in pkg/utils."""
    if not value or value[0] not in _NAME_FIRST or not _NAME_REST.issuperset(value):
        raise CNIError(code, f"invalid characters in {kind}", value)


def _check_ifname(ifname: str) -> None:
    """Interface names as the kernel and pkg/utils accept them (15 bytes, no '/', ':' or space)."""
    problem = ""
    if len(ifname.encode("utf-8", "surrogateescape")) > 15:
        problem = "longer than 15 bytes"
    elif ifname in (".", ".."):
        problem = "'.' and '..' are not interface names"
    elif any(c in "/:" or c.isspace() or not c.isprintable() for c in ifname):
        problem = "contains '/', ':', whitespace or control characters"
    if problem:
        raise CNIError(ERR_INVALID_ENVIRONMENT, "invalid interface name in CNI_IFNAME", f"{ifname!r}: {problem}")


def validate(request: Request, environ: Mapping[str, str]) -> None:
    """Environment and version checks, in the order the Go skeleton applies them."""
    missing = [name for name in _REQUIRED_ENV[request.command] if not environ.get(name)]
    if missing:
        raise CNIError(ERR_INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing")
    if request.command in ("ADD", "CHECK", "DEL"):
        _check_name("CNI_CONTAINERID", request.container_id, ERR_INVALID_ENVIRONMENT)
        _check_ifname(request.ifname)


def parse(request: Request, environ: Mapping[str, str], stdin_fd: int) -> None:
    """Fill ``request`` from stdin and check it; raises CNIError on the first problem."""
    request.stdin = read_stdin(stdin_fd)
    request.config = decode_config(request.stdin)
    request.cni_version = config_version(request.config)
    validate(request, environ)
    name = request.config.get("name")
    if not isinstance(name, str) or not name:
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, "missing network name")
    _check_name("network name", name, ERR_INVALID_NETWORK_CONFIG)
    if request.cni_version not in SUPPORTED_VERSIONS:
        raise CNIError(
            ERR_INCOMPATIBLE_VERSION, "incompatible CNI versions",
            f'config is "{request.cni_version}", plugin supports {list(SUPPORTED_VERSIONS)}',
        )
    minimum = _MIN_VERSION.get(request.command)
    if minimum and version_tuple(request.cni_version) < version_tuple(minimum):
        raise CNIError(
            ERR_INCOMPATIBLE_VERSION, f"config version does not allow {request.command}",
            f'{request.command} needs cniVersion {minimum} or later, config is "{request.cni_version}"',
        )


def version_answer(request: Request) -> dict[str, Any]:
    """VERSION: echo the protocol version the runtime asked in, list every supported version."""
    asked = ""
    try:
        asked = config_version(decode_config(request.stdin)) if request.stdin.strip() else ""
    except CNIError:
        asked = ""
    return {"cniVersion": asked or LATEST_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}


def _dispatch(plugin: Plugin, request: Request, environ: Mapping[str, str], stdin_fd: int) -> Outcome:
    if request.command not in COMMANDS:
        raise CNIError(ERR_INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {request.command}")
    if request.command == "VERSION":
        try:
            request.stdin = read_stdin(stdin_fd)
        except CNIError:
            request.stdin = b""  # VERSION needs nothing from stdin; it must always answer
        return Outcome(result=version_answer(request))
    parse(request, environ, stdin_fd)
    handlers: dict[str, Callable[[Request], Any]] = {
        "ADD": plugin.add, "CHECK": plugin.check, "DEL": plugin.delete,
        "GC": plugin.gc, "STATUS": plugin.status,
    }
    result = handlers[request.command](request)
    return Outcome(result=result if request.command == "ADD" else None)


def write_json(doc: Mapping[str, Any], fd: int = 1) -> None:
    """Write one JSON document to stdout in a single write (compact, newline-terminated)."""
    data = (jsonio.dumps(doc) + "\n").encode("ascii")
    try:
        while data:
            written = os.write(fd, data)
            data = data[written:]
    except OSError:
        pass  # the runtime went away; there is nobody left to tell


def run(plugin: Plugin, environ: Mapping[str, str] | None = None, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Serve one invocation: the whole life of a plugin process. Returns the exit status."""
    env = os.environ if environ is None else environ
    request = Request.from_environ(env)
    try:
        outcome = _dispatch(plugin, request, env, stdin_fd)
    except CNIError as exc:
        outcome = Outcome(error=exc)
    except Exception as exc:  # a bug must still produce an error object, never a traceback on stdout
        outcome = Outcome(error=CNIError(100, "internal error in cni-logger", f"{type(exc).__name__}: {exc}"))
    if request.command == "DEL" and outcome.error is not None:
        # DEL is best effort and must succeed, so a runtime can always tear the chain down.
        outcome = Outcome(suppressed=outcome.error)
    try:
        outcome = plugin.finish(request, outcome)
    except Exception as exc:  # recording must never change the answer unless the plugin decided so
        _stderr_line(f"cni-logger: internal error while recording the event: {type(exc).__name__}: {exc}")
    if outcome.error is not None:
        version = request.cni_version if request.cni_version in SUPPORTED_VERSIONS else LATEST_VERSION
        write_json(outcome.error.to_json(version), stdout_fd)
        return 1
    if outcome.result is not None:
        write_json(outcome.result, stdout_fd)
    return 0


def _stderr_line(text: str) -> None:
    try:
        os.write(2, (text.replace("\n", "\\n") + "\n").encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def about() -> str:
    return f"CNI logger plugin: records an audit event for every invocation. " \
           f"CNI protocol versions supported: {', '.join(SUPPORTED_VERSIONS)}"


def main_exit(code: int) -> None:
    """Flush and leave without interpreter finalisation (nothing buffered remains by design)."""
    try:
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        os._exit(code)
