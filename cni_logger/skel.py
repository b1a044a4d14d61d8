"""The CNI protocol skeleton: environment, stdin, version checks, dispatch and the one JSON answer.

This module knows the CNI specification (0.1.0 to 1.1.0) and nothing about any plugin. It mirrors
the Go ``pkg/skel`` of the reference plugins: a plugin supplies one callable per operation and a
``finish`` hook, and declares what Go's ``PluginMainFuncs`` takes as arguments (its ``about`` text and
supported versions) plus the wording of its internal error and the commands that must succeed
whatever happens. The skeleton turns the runtime's environment and stdin into a ``Request``, refuses
bad input with the spec's error object, applies what the plugin declared, and writes exactly one
JSON document to stdout: encoding and writing the answer happen inside its guard, so no failure of
the plugin's or of the encoder's leaves stdout empty or holding a traceback.

It imports only what every invocation needs (``os``, ``sys``, ``time``, ``select`` and the C JSON
accelerator through ``jsonio``), so VERSION and STATUS are answered without loading ``json`` or
``re``; whatever else a plugin needs it imports when it needs it.
"""

from __future__ import annotations

import os
import select
import sys
import time
from _thread import _local  # threading.local without importing threading

from cni_logger import jsonio

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:  # typing costs start-up time on the VERSION / STATUS path; annotations are strings
    from collections.abc import Callable, Mapping
    from typing import Any, Protocol

    from cni_logger.thick import Caller
else:
    Protocol = object

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
"""The spec versions this skeleton implements (Go's ``version.All``); a plugin declares which it supports."""
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
ERR_INTERNAL = 100
"""The plugin itself failed (a bug): codes 0-99 are the spec's, "100 and up" are free for plugins."""

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


class _Streams(_local):
    """Where this thread's invocation writes its stderr: fd 2, unless an agent serves several at once (``thick``)."""

    stderr = 2


streams = _Streams()


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

    __slots__ = ("args", "caller", "cni_version", "command", "config", "container_id", "ifname", "netns",
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
        self.caller: Caller | None = None
        """Who the runtime started, when this process only serves the invocation (``thick``); None: this process."""

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

    ``suppressed`` holds an error that an ``always_succeed`` command (DEL, for most plugins) put up
    with: the answer is success, but ``finish`` still learns what was wrong with the request.
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
    """What a plugin declares and implements on top of the skeleton."""

    about: str
    """What the plugin is, one line: printed with the supported versions when there is no CNI_COMMAND."""
    versions: tuple[str, ...]
    """The spec versions it supports (a subset of ``SUPPORTED_VERSIONS``): VERSION lists them, others get code 1."""
    internal_error: str
    """The ``msg`` of the ``ERR_INTERNAL`` error object answered when the plugin or the encoder fails."""
    always_succeed: frozenset[str]
    """Commands answered with success whatever went wrong; the error is kept as ``Outcome.suppressed``."""

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


def read_stdin(fd: int, limit: int = MAX_STDIN_BYTES, timeout: float = STDIN_TIMEOUT_SECONDS,
               prefix: bytes = b"") -> bytes:
    """Read all of stdin, refusing more than ``limit`` bytes and giving up after ``timeout`` seconds.

    ``prefix``: bytes of this stdin already read by the thick-mode shim, which handed the rest over (``thick``)."""
    if not prefix and os.isatty(fd):
        raise CNIError(ERR_IO_FAILURE, "stdin is a terminal", "pipe the network configuration to the plugin")
    chunks: list[bytes] = [prefix] if prefix else []
    size = len(prefix)
    if size > limit:
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, "network configuration too large",
                       f"more than {limit} bytes on stdin")
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
    """Parse the network configuration JSON object from stdin (code 6 when it is not one).

    ``jsonio``'s reading policy is Go's: a number beyond float64 range, ``NaN`` or ``Infinity`` is a
    decoding error here, as it is for every libcni-based plugin.
    """
    try:
        config = jsonio.loads_bytes(data)
    except UnicodeDecodeError as exc:
        raise CNIError(ERR_DECODING_FAILURE, "error decoding network config", f"invalid UTF-8: {exc}") from exc
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


def _valid_name(value: str) -> bool:
    """Container ids and network names: ``^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$`` as in pkg/utils."""
    return bool(value) and value[0] in _NAME_FIRST and _NAME_REST.issuperset(value)


def network_name_problem(name: object) -> str | None:
    """Why libcni's ``pkg/utils.ValidateNetworkName`` refuses ``name`` (the config's ``name`` value), or None.

    The one network-name rule: the skeleton answers it as code 7, the installer refuses to install
    into a network whose every ADD would fail with it.
    """
    if not isinstance(name, str) or not name:
        return "missing network name"
    if not _valid_name(name):
        return f"invalid characters in network name {name!r}"
    return None


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
        if not _valid_name(request.container_id):
            raise CNIError(ERR_INVALID_ENVIRONMENT, "invalid characters in CNI_CONTAINERID", request.container_id)
        _check_ifname(request.ifname)


def parse(request: Request, environ: Mapping[str, str], stdin_fd: int,
          versions: tuple[str, ...] = SUPPORTED_VERSIONS, stdin_prefix: bytes = b"") -> None:
    """Fill ``request`` from stdin and check it against ``versions``; raises CNIError on the first problem."""
    request.stdin = read_stdin(stdin_fd, prefix=stdin_prefix)
    request.config = decode_config(request.stdin)
    request.cni_version = config_version(request.config)
    validate(request, environ)
    problem = network_name_problem(request.config.get("name"))
    if problem:
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, problem)
    if request.cni_version not in versions:
        raise CNIError(
            ERR_INCOMPATIBLE_VERSION, "incompatible CNI versions",
            f'config is "{request.cni_version}", plugin supports {list(versions)}',
        )
    minimum = _MIN_VERSION.get(request.command)
    if minimum and version_tuple(request.cni_version) < version_tuple(minimum):
        raise CNIError(
            ERR_INCOMPATIBLE_VERSION, f"config version does not allow {request.command}",
            f'{request.command} needs cniVersion {minimum} or later, config is "{request.cni_version}"',
        )


def version_answer(request: Request, versions: tuple[str, ...] = SUPPORTED_VERSIONS) -> dict[str, Any]:
    """VERSION: echo the protocol version the runtime asked in, list every supported version."""
    asked = ""
    try:
        asked = config_version(decode_config(request.stdin)) if request.stdin.strip() else ""
    except CNIError:
        asked = ""
    return {"cniVersion": asked or versions[-1], "supportedVersions": list(versions)}


def _dispatch(plugin: Plugin, request: Request, environ: Mapping[str, str], stdin_fd: int,
              stdin_prefix: bytes = b"") -> Outcome:
    if request.command not in COMMANDS:
        raise CNIError(ERR_INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {request.command}")
    if request.command == "VERSION":
        try:
            request.stdin = read_stdin(stdin_fd, prefix=stdin_prefix)
        except CNIError:
            request.stdin = b""  # VERSION needs nothing from stdin; it must always answer
        return Outcome(result=version_answer(request, plugin.versions))
    parse(request, environ, stdin_fd, plugin.versions, stdin_prefix)
    handlers: dict[str, Callable[[Request], Any]] = {
        "ADD": plugin.add, "CHECK": plugin.check, "DEL": plugin.delete,
        "GC": plugin.gc, "STATUS": plugin.status,
    }
    result = handlers[request.command](request)
    return Outcome(result=result if request.command == "ADD" else None)


def encode_answer(doc: Mapping[str, Any]) -> bytes:
    """One JSON document as the runtime reads it: compact, ASCII-only, newline-terminated."""
    return (jsonio.dumps(doc) + "\n").encode("ascii")


def write_answer(data: bytes, fd: int = 1) -> None:
    """Write the answer in as few writes as the pipe allows."""
    try:
        while data:
            written = os.write(fd, data)
            data = data[written:]
    except OSError:
        pass  # the runtime went away; there is nobody left to tell


def _declared(plugin: Plugin, request: Request, outcome: Outcome) -> Outcome:
    """The plugin's ``always_succeed`` policy applied to ``outcome``."""
    if outcome.error is not None and request.command in plugin.always_succeed:
        return Outcome(suppressed=outcome.error)
    return outcome


def _internal(plugin: Plugin, exc: BaseException) -> CNIError:
    return CNIError(ERR_INTERNAL, plugin.internal_error, f"{type(exc).__name__}: {exc}")


def _error_answer(plugin: Plugin, request: Request, error: CNIError) -> bytes:
    version = request.cni_version if request.cni_version in plugin.versions else plugin.versions[-1]
    return encode_answer(error.to_json(version))


def run(plugin: Plugin, environ: Mapping[str, str] | None = None, stdin_fd: int = 0, stdout_fd: int = 1,
        caller: Caller | None = None, stdin_prefix: bytes = b"") -> int:
    """Serve one invocation: the whole life of a plugin process. Returns the exit status.

    ``caller`` and ``stdin_prefix`` come from thick mode's shim (``thick``): the process the runtime started
    when it is not this one, and the bytes of stdin it already read.

    The result is encoded before ``finish`` sees the outcome, so a result that cannot be written is an
    error the plugin records as such. Whatever ``finish`` or the encoder raises becomes an
    ``ERR_INTERNAL`` error object (or, for an ``always_succeed`` command, success and a line on stderr).
    """
    env = os.environ if environ is None else environ
    request = Request.from_environ(env)
    request.caller = caller
    answer = b""
    try:
        outcome = _dispatch(plugin, request, env, stdin_fd, stdin_prefix)
        if outcome.result is not None:
            answer = encode_answer(outcome.result)
    except CNIError as exc:
        outcome = Outcome(error=exc)
    except Exception as exc:  # a bug must still produce an error object, never a traceback on stdout
        outcome = Outcome(error=_internal(plugin, exc))
    outcome = _declared(plugin, request, outcome)
    encoded = outcome.result
    try:
        outcome = _declared(plugin, request, plugin.finish(request, outcome))
        if outcome.error is not None:
            answer = _error_answer(plugin, request, outcome.error)
        elif outcome.result is None:
            answer = b""
        elif outcome.result is not encoded:
            answer = encode_answer(outcome.result)
    except Exception as exc:  # nobody recorded this: the answer says it, or stderr when the answer cannot
        outcome = _declared(plugin, request, Outcome(error=_internal(plugin, exc)))
        if outcome.error is not None:
            answer = _error_answer(plugin, request, outcome.error)
        else:
            answer = b""
            stderr_line(f"{plugin.internal_error}: {type(exc).__name__}: {exc}")
    write_answer(answer, stdout_fd)
    return 0 if outcome.error is None else 1


def write_stderr(data: bytes) -> None:
    """Write to this invocation's stderr (``streams``); a closed stderr is not an error."""
    fd = streams.stderr
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass


def stderr_line(text: str) -> None:
    """One line for a person on stderr (newlines escaped, any text encodable); a closed stderr is not an error."""
    write_stderr((text.replace("\n", "\\n") + "\n").encode("utf-8", "backslashreplace"))


def about(plugin: Plugin) -> str:
    """What the plugin is and which versions it speaks, as Go's skeleton prints it without CNI_COMMAND."""
    return f"{plugin.about}\nCNI protocol versions supported: {', '.join(plugin.versions)}"


def main_exit(code: int) -> None:
    """Flush and leave without interpreter finalisation (nothing buffered remains by design)."""
    try:
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        os._exit(code)
