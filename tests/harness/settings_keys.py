"""The keys the plugin reads from its network-config entry, found by asking the parser itself.

A hand-kept list of keys drifts from ``cni_logger.settings.load``; this one cannot: the parser is given a
config that notes every key it is asked for, with the default it passes. The docs check
(``tests/system/test_docs.py``) and the example configs' test compare against it.
"""

from __future__ import annotations

import functools
from typing import Any

from cni_logger import settings

STANDARD_KEYS = frozenset(("cniVersion", "name", "type", "capabilities"))
"""Keys of a logger entry that the CNI conventions define, not the logger."""


class _Asked(dict[str, Any]):
    """A config that notes every key the parser asks it for, with the default the parser passes."""

    def __init__(self, asked: dict[str, Any], prefix: str = "", **items: Any) -> None:
        super().__init__(**items)
        self.asked, self.prefix = asked, prefix

    def get(self, key: str, default: Any = None) -> Any:
        self.asked[self.prefix + key] = default
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.setdefault(self.prefix + key, None)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.setdefault(self.prefix + str(key), None)
        return super().__contains__(key)


@functools.cache
def code_keys() -> dict[str, Any]:
    """Every key ``settings.load`` reads (nested ones as ``logOptions.maxSize``) and its default (``None``:
    read only when present)."""
    asked: dict[str, Any] = {}
    settings.load(_Asked(asked, logOptions=_Asked(asked, "logOptions.")))
    return asked
