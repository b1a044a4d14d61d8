"""JSON as Go's decoder reads it (the one reading policy), and JSON writing, without ``import json``.

The policy, for the plugin and the installer alike: what libcni and Go plugins refuse is refused here
too, at parse time, so nothing downstream meets a value it cannot handle.

* ``NaN`` and ``Infinity`` are not JSON (RFC 8259); Python's ``json`` accepts them, Go does not.
* A number beyond the range of a 64-bit float is refused: Go reads every number of a
  ``map[string]interface{}`` (libcni's view of a config and its ``prevResult``) as a ``float64`` and
  fails with "cannot unmarshal number 1e400 into Go value of type float64". Python would read it
  as ``inf`` (or an integer ``json`` can write but Go cannot read) and the answer could not be written.
* Bytes are strict UTF-8 (``loads_bytes``), and a reader that would rewrite the document can ask for
  duplicate keys to be refused (``unique_keys``): Go keeps the last one, a rewrite would have to guess.

``import json`` loads ``re`` (and through it ``enum``, ``functools``...), which costs as much as the
rest of a VERSION or STATUS invocation together. The standard library's own C accelerator ``_json``
holds the scanner and encoder that ``json`` uses underneath; this module drives them directly, with
the hooks above and the settings of compact ``json.dumps``.

It fails safe: if ``_json`` is missing or behaves differently in some Python release (checked by a
self-test at import), every call goes through the ``json`` module instead, with the same hooks.
Syntax errors are always raised by ``json`` itself, so messages are identical either way.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar

_WHITESPACE = " \t\n\r"  # JSON's insignificant whitespace
_INFINITY = float("inf")
_LONGEST_FINITE_INTEGER = 309
"""Digits of the largest float64 (about 1.8e308): a longer integer literal is out of range."""


class DuplicateKeyError(ValueError):
    """An object names the same key twice (raised only when ``unique_keys`` asks for it)."""


def _reject_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (RFC 8259); Go's decoder, hence libcni, refuses them too."""
    raise ValueError(f"{name} is not valid JSON")


def _out_of_range(text: str) -> ValueError:
    shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
    return ValueError(f"number {shown} is out of range for a 64-bit float (Go's decoder refuses it)")


def _float(text: str) -> float:
    value = float(text)
    if value == _INFINITY or value == -_INFINITY:
        raise _out_of_range(text)
    return value


def _int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits >= _LONGEST_FINITE_INTEGER and abs(float(text)) == _INFINITY:
        raise _out_of_range(text)
    return int(text)


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKeyError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


class _DecoderSettings:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``, set to the policy."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = staticmethod(_float)
    parse_int = staticmethod(_int)
    parse_constant = staticmethod(_reject_constant)
    memo: ClassVar[dict[str, Any]] = {}


def _raise_type_error(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_scan: Callable[[str, int], tuple[Any, int]] | None = None
_encode: Callable[[Any, int], Any] | None = None
_encode_text: Callable[[Any, int], Any] | None = None


def _hooks_honoured(scan: Callable[[str, int], tuple[Any, int]]) -> bool:
    """Whether the scanner calls the policy's number hook (a silent ``inf`` would break the answer)."""
    try:
        scan("[1e400]", 0)
    except ValueError:
        return True
    return False


try:
    import _json

    _scan = _json.make_scanner(_DecoderSettings)  # type: ignore[arg-type]
    _encode = _json.make_encoder(None, _raise_type_error, _json.encode_basestring_ascii, None, ":", ",",
                                 False, False, False)
    _encode_text = _json.make_encoder(None, _raise_type_error, _json.encode_basestring, None, ":", ",",
                                      False, False, False)
    _probe = '{"a": [1, 2.5, "\\u00e9", null, true]}'
    if ("".join(_encode({"a": [1, 2.5, "\u00e9\n", None, True]}, 0)) != '{"a":[1,2.5,"\\u00e9\\n",null,true]}'
            or "".join(_encode_text(["\u00e9\n"], 0)) != '["\u00e9\\n"]'
            or _scan(_probe, 0) != ({"a": [1, 2.5, "\u00e9", None, True]}, len(_probe))
            or not _hooks_honoured(_scan)):
        raise ValueError("_json behaves differently from json")
except Exception:  # pragma: no cover - depends on the Python build
    _scan = _encode = _encode_text = None


def loads(text: str, *, unique_keys: bool = False) -> Any:
    """``json.loads(text)`` under the reading policy (see the module docstring).

    Raises ``ValueError`` (``json.JSONDecodeError`` for syntax, ``DuplicateKeyError`` with
    ``unique_keys``) or ``RecursionError`` for nesting deeper than the interpreter's stack allows.
    """
    if _scan is not None and not unique_keys:  # unique_keys is for operator tools: json's own path will do
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = _scan(text, start)
        except Exception:
            # Invalid input. The scanner's own error path expects json.decoder to be loaded already
            # (3.11 raises SystemError otherwise), so let json parse it again and word the error.
            pass
        else:
            if end == len(text) or not text[end:].strip(_WHITESPACE):
                return value
    import json

    return json.loads(text, parse_constant=_reject_constant, parse_float=_float, parse_int=_int,
                      object_pairs_hook=_unique_object if unique_keys else None)


def loads_bytes(data: bytes, *, unique_keys: bool = False) -> Any:
    """``loads`` for bytes that must be strict UTF-8 (``UnicodeDecodeError``, a ``ValueError``, if not)."""
    return loads(data.decode("utf-8"), unique_keys=unique_keys)


def dumps(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"), allow_nan=False)``: compact, ASCII-only."""
    if _encode is not None:
        return "".join(_encode(value, 0))
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def dumps_text(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``: for UTF-8 lines."""
    if _encode_text is not None:
        return "".join(_encode_text(value, 0))
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
