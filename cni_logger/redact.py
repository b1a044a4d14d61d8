"""Keep secrets and oversized values out of the audit trail.

Network configs carry credentials in practice: Calico substitutes a service-account token into its
netconf, Linkerd's list carried ``k8s_auth_token``, Multus points at kubeconfigs, and containerd
passes every pod annotation in ``runtimeConfig``. Masking is by key name (anywhere in the tree) and
by value shape (credentials inside URLs, JWTs, PEM blocks), so a secret under an unexpected key is
still caught when it looks like one.

Every string is also made safe to encode: environment values and JSON strings may hold lone
surrogates (undecodable bytes), which would make the rendered line unencodable.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

DEFAULT_REDACT_KEYS: tuple[str, ...] = (
    "password", "passwd", "secret", "token", "key", "cert", "credential", "kubeconfig",
    "auth", "bearer", "apikey", "cookie", "privatekey",
)
"""Substrings of key names (compared folded, see ``fold_key``) whose values are masked anywhere in the config."""
MASK = "[REDACTED]"
MAX_STRING_CHARS = 2048
"""Longer strings are cut: a single value must not push an event past the line limit."""
MAX_ITEMS = 256
"""Longer lists and objects are cut, with a marker saying how much was left out."""
MAX_DEPTH = 24
POD_ANNOTATIONS_KEY = "io.kubernetes.cri.pod-annotations"

# Compiled on first use: most configs contain none of these shapes, and compiling costs start-up time.
_URL_CREDENTIALS = r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/@\s]+@"
_JWT = r"\beyJ[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]*"
_PEM = r"(?s)-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)"
_PEM_BASE64 = r"LS0tLS1CRUdJTi[A-Za-z0-9+/=]*"  # base64 of "-----BEGIN" (kubeconfig *-data fields)
_EMBEDDED_WORDS = ("password", "passwd", "secret", "token", "key", "cert", "credential", "auth", "bearer")
# "name: value" / "name=value" inside a string (an inline kubeconfig, a DSN, a command line) whose name
# contains a secret word: the value is masked, the name kept.
_EMBEDDED_PAIR = (r"(?i)([\w.\-]*(?:" + "|".join(_EMBEDDED_WORDS) + r")[\w.\-]*[\"']?\s*[:=]\s*)"
                  r"(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)")


def safe_text(value: str) -> str:
    """Replace lone surrogates (undecodable input bytes) with U+FFFD so the text always encodes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


def fold_key(name: str) -> str:
    """Key names compare case-insensitively with ``_`` and ``-`` ignored (``X-Api-Id`` ~ ``x_api_id``)."""
    return name.lower().replace("_", "").replace("-", "")


def is_secret_key(key: str, secret_keys: Iterable[str]) -> bool:
    """Whether ``key`` contains one of ``secret_keys`` (already folded by ``fold_key``)."""
    folded = fold_key(key)
    return any(part in folded for part in secret_keys)


def mask_value_shapes(text: str) -> str:
    """Mask credentials that are recognisable by their form wherever they appear."""
    patterns: list[tuple[str, Any]] = []
    if "://" in text and "@" in text:
        patterns.append((_URL_CREDENTIALS, lambda m: m.group(1) + MASK + "@"))
    if "eyJ" in text:
        patterns.append((_JWT, MASK))
    if "-----BEGIN" in text:
        patterns.append((_PEM, MASK))
    if "LS0tLS1CRUdJTi" in text:
        patterns.append((_PEM_BASE64, MASK))
    if ("=" in text or ":" in text) and any(word in text.lower() for word in _EMBEDDED_WORDS):
        patterns.append((_EMBEDDED_PAIR, lambda m: m.group(1) + MASK))
    if not patterns:
        return text
    import re  # only text that may hold a credential pays for the regex engine

    for pattern, replacement in patterns:
        text = re.sub(pattern, replacement, text)
    return text


def _cap_string(text: str) -> str:
    if len(text) <= MAX_STRING_CHARS:
        return text
    return f"{text[:MAX_STRING_CHARS]}...[truncated {len(text) - MAX_STRING_CHARS} characters]"


def scrub(value: Any, secret_keys: Iterable[str], depth: int = 0) -> Any:
    """Return a copy of ``value`` with secrets masked, sizes capped and text made encodable."""
    keys = tuple(secret_keys)
    if isinstance(value, str):
        return _cap_string(mask_value_shapes(safe_text(value)))
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth >= MAX_DEPTH:
        return "[truncated: nested too deep]"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["[truncated]"] = f"{len(value) - MAX_ITEMS} more keys"
                break
            name = _cap_string(safe_text(str(key)))
            if key == POD_ANNOTATIONS_KEY and isinstance(item, dict):
                out[name] = {_cap_string(safe_text(str(k))): MASK for k in item}
            elif is_secret_key(name, keys) and item not in (None, "", [], {}):
                out[name] = MASK
            else:
                out[name] = scrub(item, keys, depth + 1)
        return out
    if isinstance(value, list | tuple):
        items = [scrub(item, keys, depth + 1) for item in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"[truncated: {len(value) - MAX_ITEMS} more items]")
        return items
    return _cap_string(safe_text(repr(value)))
