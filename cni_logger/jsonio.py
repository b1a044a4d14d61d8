"""JSON for the protocol layer without ``import json``.

``import json`` loads ``re`` (and through it ``enum``, ``functools``...), which costs as much as the
rest of a VERSION or STATUS invocation together. The standard library's own C accelerator ``_json``
holds the scanner and encoder that ``json`` uses underneath; this module drives them directly, with
exactly the settings of ``json.loads`` and of compact ``json.dumps``.

It fails safe: if ``_json`` is missing or behaves differently in some Python release (checked by a
self-test at import), every call goes through the ``json`` module instead. Errors are always raised
by ``json`` itself, so messages are identical either way.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar

_WHITESPACE = " \t\n\r"  # JSON's insignificant whitespace


def _reject_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (RFC 8259); Go's decoder, hence libcni, refuses them too."""
    raise ValueError(f"{name} is not valid JSON")


class _DecoderSettings:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``, at their defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_reject_constant)
    memo: ClassVar[dict[str, Any]] = {}


def _raise_type_error(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_scan: Callable[[str, int], tuple[Any, int]] | None = None
_encode: Callable[[Any, int], Any] | None = None
_encode_text: Callable[[Any, int], Any] | None = None
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
            or _scan(_probe, 0) != ({"a": [1, 2.5, "\u00e9", None, True]}, len(_probe))):
        raise ValueError("_json behaves differently from json")
except Exception:  # pragma: no cover - depends on the Python build
    _scan = _encode = _encode_text = None


def loads(text: str) -> Any:
    """``json.loads(text)`` for a ``str``, refusing ``NaN`` and ``Infinity``."""
    if _scan is not None:
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

    return json.loads(text, parse_constant=_reject_constant)


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
