"""The one JSON reading policy (``jsonio``): what Go's decoder refuses is refused, on both code paths.

Also: equivalence with the ``json`` module for ordinary documents on the C fast path. The import-cost
side (VERSION and STATUS never load ``json``) is covered in ``tests/system/test_rooms.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cni_logger import jsonio

OUT_OF_RANGE = ["1e400", "-1e400", "1.7976931348623159e308", "2" + "0" * 308, "-" + "9" * 400, "1" + "0" * 5000]
IN_RANGE = ["1.7976931348623157e308", "-1.7976931348623157e308", "1" + "0" * 308, "1e-400", "4.9e-324", "-0",
            "0.0", "9007199254740993"]


@pytest.fixture(params=["_json", "json module"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test runs on the C fast path and on the fallback a Python without ``_json`` would take."""
    if request.param == "json module":
        monkeypatch.setattr(jsonio, "_scan", None)
    yield str(request.param)


@pytest.mark.parametrize("number", OUT_OF_RANGE)
@pytest.mark.parametrize("template", ["{}", '{{"prevResult": {{"mtu": [{}]}}}}'])
def test_numbers_beyond_float64_are_refused(path: str, number: str, template: str) -> None:
    with pytest.raises(ValueError, match="out of range for a 64-bit float") as info:
        jsonio.loads(template.format(number))
    assert number[:40] in str(info.value) and len(str(info.value)) < 200  # named, but not 5000 digits long


@pytest.mark.parametrize("number", IN_RANGE)
def test_numbers_within_float64_are_read_as_json_reads_them(path: str, number: str) -> None:
    value = jsonio.loads(f'{{"n": {number}}}')["n"]
    assert value == json.loads(number) and type(value) is type(json.loads(number))


@pytest.mark.parametrize("text", ["NaN", '{"a": -Infinity}', "[Infinity]"])
def test_nan_and_infinity_are_refused(path: str, text: str) -> None:
    with pytest.raises(ValueError, match="is not valid JSON"):
        jsonio.loads(text)


def test_duplicate_keys_are_kept_last_unless_unique_keys_asks(path: str) -> None:
    text = '{"name": "a", "plugins": [{"type": "x", "type": "y"}], "name": "b"}'
    assert jsonio.loads(text) == {"name": "b", "plugins": [{"type": "y"}]}  # what Go does
    with pytest.raises(jsonio.DuplicateKeyError, match="duplicate key 'type'"):
        jsonio.loads(text, unique_keys=True)
    assert jsonio.loads('{"a": {"b": 1}, "b": [{"a": 2}]}', unique_keys=True) == {"a": {"b": 1}, "b": [{"a": 2}]}


def test_unique_keys_applies_the_number_policy_too(path: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        jsonio.loads('{"a": 1e400}', unique_keys=True)
    with pytest.raises(ValueError, match="is not valid JSON"):
        jsonio.loads('{"a": NaN}', unique_keys=True)


@pytest.mark.parametrize("data", [b'{"name": "\xff"}', b"\xc3\x28", b'{"n": "\xed\xa0\x80"}', b"\x80{}"])
def test_bytes_must_be_strict_utf8(path: str, data: bytes) -> None:
    with pytest.raises(UnicodeDecodeError):
        jsonio.loads_bytes(data)


def test_bytes_are_read_under_the_same_policy(path: str) -> None:
    assert jsonio.loads_bytes('{"name": "réseau"}'.encode(), unique_keys=True) == {"name": "réseau"}
    with pytest.raises(jsonio.DuplicateKeyError):
        jsonio.loads_bytes(b'{"a": 1, "a": 1}', unique_keys=True)
    with pytest.raises(ValueError, match="out of range"):
        jsonio.loads_bytes(b"[1e999]")


def test_syntax_errors_are_json_decode_errors(path: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        jsonio.loads('{"a": 1,}')
    with pytest.raises(json.JSONDecodeError):
        jsonio.loads('{"a": 1} trailing', unique_keys=True)


def test_the_self_test_notices_a_scanner_that_ignores_the_number_hook() -> None:
    assert jsonio._scan is not None and jsonio._hooks_honoured(jsonio._scan)

    def lenient(text: str, start: int) -> tuple[object, int]:
        return json.loads(text[start:]), len(text)

    assert not jsonio._hooks_honoured(lenient)


def test_writing_refuses_what_reading_refuses() -> None:
    for value in (float("inf"), float("nan"), {"a": [float("-inf")]}):
        with pytest.raises(ValueError):
            jsonio.dumps(value)
        with pytest.raises(ValueError):
            jsonio.dumps_text(value)


def test_the_fast_json_path_is_active_on_this_python() -> None:
    assert jsonio._scan is not None and jsonio._encode is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)


@given(json_values, st.sampled_from(["", " ", "\n\t", " \r\n"]))
def test_jsonio_matches_the_json_module(value: object, pad: str) -> None:
    assert jsonio.dumps(value) == json.dumps(value, separators=(",", ":"))
    text = pad + json.dumps(value) + pad
    assert jsonio.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", "{not json", '{"a": 1} x', "[1,]", '"\\ud800"'])
def test_jsonio_errors_and_oddities_match_the_json_module(text: str) -> None:
    try:
        expected: object = json.loads(text)
    except ValueError as exc:
        with pytest.raises(ValueError, match=str(exc).split(":")[0]):
            jsonio.loads(text)
        return
    got = jsonio.loads(text)
    assert json.dumps(got) == json.dumps(expected)


@pytest.mark.parametrize("text", ["NaN", "-Infinity", '{"mtu": Infinity}', "[1, NaN]"])
def test_jsonio_refuses_what_is_not_json(text: str) -> None:
    """Python's json accepts these; RFC 8259 and Go's decoder (libcni) do not, and neither does the plugin."""
    with pytest.raises(ValueError, match="is not valid JSON"):
        jsonio.loads(text)
    with pytest.raises(ValueError):
        jsonio.dumps(json.loads(text))
