"""Unit tests for cni_logger.settings: defaults, each key valid and invalid, redactKeys."""

from __future__ import annotations

from typing import Any

import pytest

from cni_logger import redact, settings

MB = 1024 * 1024


def base(**keys: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "net", "type": "logger", **keys}


def with_options(**options: Any) -> dict[str, Any]:
    return base(logOptions=options)


def assert_defaults(conf: settings.Settings, *, except_: tuple[str, ...] = ()) -> None:
    expected = {
        "log_to_stderr": True, "log_file": None, "max_size_bytes": 100 * MB, "max_backups": 5,
        "max_age_days": 0.0, "compress": False, "rotation": "size", "fail_on_log_error": False,
        "record_status": False, "redact_keys": redact.DEFAULT_REDACT_KEYS, "role": None,
    }
    for name, value in expected.items():
        if name not in except_:
            assert getattr(conf, name) == value, name


def only_problem(conf: settings.Settings) -> str:
    assert len(conf.problems) == 1, conf.problems
    return conf.problems[0]


# -- defaults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [None, {}, base()])
def test_defaults(config: dict[str, Any] | None) -> None:
    conf = settings.load(config)
    assert_defaults(conf)
    assert conf.problems == []


def test_default_redact_keys_cover_the_documented_names() -> None:
    for name in ("password", "passwd", "secret", "token", "key", "cert", "credential", "kubeconfig",
                 "auth", "bearer", "apikey", "cookie", "privatekey"):
        assert name in redact.DEFAULT_REDACT_KEYS


# -- booleans --------------------------------------------------------------------------------------

BOOLEANS = [("failOnLogError", "fail_on_log_error", False), ("logToStderr", "log_to_stderr", True),
            ("recordStatus", "record_status", False)]


@pytest.mark.parametrize(("key", "attr", "default"), BOOLEANS)
@pytest.mark.parametrize("value", [True, False])
def test_boolean_keys_accept_booleans(key: str, attr: str, default: bool, value: bool) -> None:
    conf = settings.load(base(**{key: value}))
    assert getattr(conf, attr) is value
    assert conf.problems == []


@pytest.mark.parametrize(("key", "attr", "default"), BOOLEANS)
@pytest.mark.parametrize("value", ["true", "no", 1, 0, None, [], {}])
def test_boolean_keys_reject_other_values(key: str, attr: str, default: bool, value: Any) -> None:
    conf = settings.load(base(**{key: value}))
    assert getattr(conf, attr) is default
    problem = only_problem(conf)
    assert repr(key) in problem and repr(value) in problem
    assert f"default {default!r}" in problem
    assert_defaults(conf)


# -- logFile ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/var/log/cni/cni-logger.log", "/x", "/var/log/cni dir/a b.log"])
def test_log_file_absolute_path_is_taken(path: str) -> None:
    conf = settings.load(base(logFile=path))
    assert conf.log_file == path
    assert conf.problems == []


@pytest.mark.parametrize("path", ["cni.log", "./cni.log", "var/log/cni.log", "~/cni.log", "", " /x"])
def test_relative_log_file_is_rejected(path: str) -> None:
    conf = settings.load(base(logFile=path))
    assert conf.log_file is None
    problem = only_problem(conf)
    assert "'logFile'" in problem and repr(path) in problem and "absolute" in problem


@pytest.mark.parametrize("path", ["/var/log/cni/", "/"])
def test_directory_log_file_is_rejected(path: str) -> None:
    conf = settings.load(base(logFile=path))
    assert conf.log_file is None
    assert repr(path) in only_problem(conf)


@pytest.mark.parametrize("value", [5, True, ["/var/log/x"], {"path": "/x"}, "/var/log/a\0b"])
def test_log_file_of_the_wrong_type_is_rejected(value: Any) -> None:
    conf = settings.load(base(logFile=value))
    assert conf.log_file is None
    problem = only_problem(conf)
    assert "'logFile'" in problem and repr(value) in problem


def test_null_log_file_means_no_file() -> None:
    conf = settings.load(base(logFile=None))
    assert conf.log_file is None and conf.problems == []


# -- role (bracket mode) -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["attempt", "outcome"])
def test_role_is_taken(value: str) -> None:
    conf = settings.load(base(role=value))
    assert conf.role == value and conf.problems == []


@pytest.mark.parametrize("value", ["Attempt", "first", "", 1, True, ["attempt"], {"role": "attempt"}])
def test_invalid_role_is_named_and_ignored(value: Any) -> None:
    conf = settings.load(base(role=value))
    assert conf.role is None
    problem = only_problem(conf)
    assert "'role'" in problem and repr(value) in problem and "['attempt', 'outcome']" in problem
    assert_defaults(conf)


def test_null_role_means_none() -> None:
    conf = settings.load(base(role=None))
    assert conf.role is None and conf.problems == []


# -- logOptions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["size", [], 5, True])
def test_log_options_must_be_an_object(value: Any) -> None:
    conf = settings.load(base(logOptions=value))
    problem = only_problem(conf)
    assert "'logOptions'" in problem and repr(value) in problem
    assert_defaults(conf)


@pytest.mark.parametrize(("megabytes", "expected"), [
    (0.02, int(0.02 * MB)), (1, MB), (0.5, MB // 2), (250, 250 * MB), (1e-9, 1),
    (1024 * 1024, 1024 * 1024 * MB),
])
def test_max_size_is_megabytes_with_fractions(megabytes: float, expected: int) -> None:
    conf = settings.load(with_options(maxSize=megabytes))
    assert conf.max_size_bytes == expected
    assert conf.problems == []


def test_max_size_002_mb_is_20971_bytes() -> None:
    assert settings.load(with_options(maxSize=0.02)).max_size_bytes == 20971


@pytest.mark.parametrize("value", [0, -1, -0.5, "10", True, None, float("nan"), float("inf"),
                                   1024 * 1024 + 1])
def test_invalid_max_size_uses_the_default(value: Any) -> None:
    conf = settings.load(with_options(maxSize=value))
    assert conf.max_size_bytes == 100 * MB
    problem = only_problem(conf)
    assert "'logOptions.maxSize'" in problem and repr(value) in problem and "100.0" in problem


@pytest.mark.parametrize("value", [0, 1, 3, 100000])
def test_max_backups_whole_numbers(value: int) -> None:
    conf = settings.load(with_options(maxBackups=value))
    assert conf.max_backups == value
    assert conf.problems == []


@pytest.mark.parametrize("value", [-1, 2.5, 3.0, True, "3", None, 100001])
def test_invalid_max_backups_uses_the_default(value: Any) -> None:
    conf = settings.load(with_options(maxBackups=value))
    assert conf.max_backups == 5
    problem = only_problem(conf)
    assert "'logOptions.maxBackups'" in problem and repr(value) in problem


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (7, 7.0), (0.5, 0.5)])
def test_max_age_days(value: float, expected: float) -> None:
    conf = settings.load(with_options(maxAge=value))
    assert conf.max_age_days == expected
    assert conf.problems == []


@pytest.mark.parametrize("value", [-1, "7", True, None, float("nan")])
def test_invalid_max_age_uses_the_default(value: Any) -> None:
    conf = settings.load(with_options(maxAge=value))
    assert conf.max_age_days == 0.0
    problem = only_problem(conf)
    assert "'logOptions.maxAge'" in problem and repr(value) in problem


@pytest.mark.parametrize("value", [True, False])
def test_compress_boolean(value: bool) -> None:
    conf = settings.load(with_options(compress=value))
    assert conf.compress is value and conf.problems == []


@pytest.mark.parametrize("value", ["gzip", 1, None])
def test_invalid_compress_uses_the_default(value: Any) -> None:
    conf = settings.load(with_options(compress=value))
    assert conf.compress is False
    problem = only_problem(conf)
    assert "'logOptions.compress'" in problem and repr(value) in problem


@pytest.mark.parametrize("value", ["size", "external"])
def test_rotation_modes(value: str) -> None:
    conf = settings.load(with_options(rotation=value))
    assert conf.rotation == value and conf.problems == []


@pytest.mark.parametrize("value", ["daily", "SIZE", "", None, 1])
def test_invalid_rotation_uses_size(value: Any) -> None:
    conf = settings.load(with_options(rotation=value))
    assert conf.rotation == "size"
    problem = only_problem(conf)
    assert "'logOptions.rotation'" in problem and repr(value) in problem


def test_one_bad_option_does_not_discard_the_good_ones() -> None:
    conf = settings.load(base(logFile="/var/log/cni.log", logToStderr="yes",
                              logOptions={"maxSize": 0.5, "maxBackups": -2, "maxAge": 3, "compress": True,
                                          "rotation": "hourly"}))
    assert conf.log_file == "/var/log/cni.log"
    assert conf.max_size_bytes == MB // 2 and conf.max_age_days == 3.0 and conf.compress is True
    assert conf.log_to_stderr is True and conf.max_backups == 5 and conf.rotation == "size"
    assert len(conf.problems) == 3
    joined = "\n".join(conf.problems)
    for fragment in ("'logToStderr'", "'yes'", "'logOptions.maxBackups'", "-2", "'logOptions.rotation'",
                     "'hourly'"):
        assert fragment in joined


def test_a_huge_bad_value_is_shortened_in_the_problem_text() -> None:
    value = "x" * 10_000
    problem = only_problem(settings.load(base(logFile=value)))
    assert "'logFile'" in problem and "xxx..." in problem
    assert len(problem) < 400


def test_unknown_keys_are_ignored() -> None:
    conf = settings.load(base(ipam={"type": "host-local"}, logLevel="debug", logOptions={"maxsize": 1}))
    assert conf.problems == []
    assert_defaults(conf)


# -- redactKeys ------------------------------------------------------------------------------------


def test_redact_keys_extend_the_defaults_lowercased() -> None:
    conf = settings.load(base(redactKeys=["SessionId", "pin"]))
    assert conf.redact_keys[: len(redact.DEFAULT_REDACT_KEYS)] == redact.DEFAULT_REDACT_KEYS
    assert conf.redact_keys[len(redact.DEFAULT_REDACT_KEYS):] == ("sessionid", "pin")
    assert conf.problems == []


def test_extra_redact_key_masks_matching_keys_case_insensitively() -> None:
    conf = settings.load(base(redactKeys=["SessionId"]))
    scrubbed = redact.scrub({"mySESSIONID": "s3", "session": "keep", "password": "pw"}, conf.redact_keys)
    assert scrubbed == {"mySESSIONID": redact.MASK, "session": "keep", "password": redact.MASK}


@pytest.mark.parametrize("entry", ["session_id", "X-Api-Id"])
def test_extra_redact_key_with_separator_masks_the_exact_key(entry: str) -> None:
    conf = settings.load(base(redactKeys=[entry]))
    scrubbed = redact.scrub({entry: "s3cr3t-value", "other": "x"}, conf.redact_keys)
    assert scrubbed == {entry: redact.MASK, "other": "x"}


@pytest.mark.parametrize("value", ["token", [""], [1], ["ok", None], {"a": 1}, None])
def test_invalid_redact_keys_keep_the_defaults(value: Any) -> None:
    conf = settings.load(base(redactKeys=value))
    assert conf.redact_keys == redact.DEFAULT_REDACT_KEYS
    problem = only_problem(conf)
    assert "'redactKeys'" in problem and repr(value) in problem
