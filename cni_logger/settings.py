"""The logger's own keys in its network-config entry, validated with safe defaults.

Key names follow Multus (``logFile``, ``logToStderr``, ``logOptions``). A bad value never breaks the
network: it is reported (key and value) and the default is used, unless ``failOnLogError`` asks for
strict audit, in which case the invocation fails with code 7.

The secret-key words and how key names compare belong to ``redact``; this module imports it only
when a config adds words or a value is rejected, so VERSION and STATUS never load it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any

DEFAULT_MAX_SIZE_MB = 100.0
DEFAULT_MAX_BACKUPS = 5
ROTATION_MODES = ("size", "external")
ROLES = ("attempt", "outcome")
"""``role``: which end of a bracketed chain an entry is (``install --bracket`` writes both)."""


class Settings:
    """Validated settings. ``problems`` lists every rejected value as a human-readable sentence."""

    __slots__ = ("compress", "extra_redact_keys", "fail_on_log_error", "log_file", "log_to_stderr", "max_age_days",
                 "max_backups", "max_size_bytes", "problems", "record_status", "role", "rotation")

    def __init__(self) -> None:
        self.log_to_stderr = True
        self.log_file: str | None = None
        self.max_size_bytes = int(DEFAULT_MAX_SIZE_MB * 1024 * 1024)
        self.max_backups = DEFAULT_MAX_BACKUPS
        self.max_age_days = 0.0
        self.compress = False
        self.rotation = "size"
        self.fail_on_log_error = False
        self.record_status = False
        self.role: str | None = None  # absent: a single logger entry, nothing to pair
        self.extra_redact_keys: tuple[str, ...] = ()  # the config's redactKeys, folded
        self.problems: list[str] = []

    @property
    def redact_keys(self) -> tuple[str, ...]:
        """Every key word whose values are masked: ``redact``'s defaults, then the config's additions."""
        from cni_logger.redact import DEFAULT_REDACT_KEYS

        return DEFAULT_REDACT_KEYS + self.extra_redact_keys


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _reject(settings: Settings, key: str, value: Any, expected: str, default: Any) -> None:
    from cni_logger.redact import mask_value_shapes  # a rejected value may itself be a credential

    shown = mask_value_shapes(repr(value))
    if len(shown) > 200:
        shown = shown[:200] + "..."
    settings.problems.append(f"invalid value for {key!r}: {shown} ({expected}); using the default {default!r}")


def _bool(settings: Settings, config: dict[str, Any], key: str, default: bool, label: str = "") -> bool:
    value = config.get(key, default)
    if isinstance(value, bool):
        return value
    _reject(settings, label or key, value, "expected true or false", default)
    return default


def load(config: dict[str, Any] | None) -> Settings:
    """Read the logger's keys from the request config (``None`` when the config was unreadable)."""
    settings = Settings()
    if not config:
        return settings
    settings.fail_on_log_error = _bool(settings, config, "failOnLogError", False)
    settings.log_to_stderr = _bool(settings, config, "logToStderr", True)
    settings.record_status = _bool(settings, config, "recordStatus", False)

    role = config.get("role")
    if role is not None:
        if role in ROLES:
            settings.role = role
        else:
            _reject(settings, "role", role, f"expected one of {list(ROLES)}", None)

    log_file = config.get("logFile")
    if log_file is not None:
        if not isinstance(log_file, str) or not log_file.startswith("/") or "\0" in log_file:
            _reject(settings, "logFile", log_file, "expected an absolute path", None)
        elif log_file.endswith("/"):
            _reject(settings, "logFile", log_file, "expected a file path, not a directory", None)
        else:
            settings.log_file = log_file

    options = config.get("logOptions", {})
    if not isinstance(options, dict):
        _reject(settings, "logOptions", options, "expected an object", {})
        options = {}
    max_size = options.get("maxSize", DEFAULT_MAX_SIZE_MB)
    if _is_number(max_size) and 0 < max_size <= 1024 * 1024:
        settings.max_size_bytes = max(int(max_size * 1024 * 1024), 1)
    else:
        _reject(settings, "logOptions.maxSize", max_size, "expected megabytes > 0", DEFAULT_MAX_SIZE_MB)
    max_backups = options.get("maxBackups", DEFAULT_MAX_BACKUPS)
    if isinstance(max_backups, int) and not isinstance(max_backups, bool) and 0 <= max_backups <= 100000:
        settings.max_backups = max_backups
    else:
        _reject(settings, "logOptions.maxBackups", max_backups, "expected a whole number >= 0",
                DEFAULT_MAX_BACKUPS)
    max_age = options.get("maxAge", 0)
    if _is_number(max_age) and max_age >= 0:
        settings.max_age_days = float(max_age)
    else:
        _reject(settings, "logOptions.maxAge", max_age, "expected days >= 0", 0)
    settings.compress = _bool(settings, options, "compress", False, "logOptions.compress")
    rotation = options.get("rotation", "size")
    if rotation in ROTATION_MODES:
        settings.rotation = rotation
    else:
        _reject(settings, "logOptions.rotation", rotation, f"expected one of {list(ROTATION_MODES)}", "size")

    if "redactKeys" in config:
        from cni_logger.redact import fold_key

        extra = config["redactKeys"]
        words = extra if isinstance(extra, list) and all(isinstance(k, str) for k in extra) else []
        folded = [fold_key(k) for k in words]
        if isinstance(extra, list) and len(folded) == len(extra) and all(folded):
            settings.extra_redact_keys = tuple(folded)
        else:
            _reject(settings, "redactKeys", extra, "expected a list of key names", [])
    return settings
