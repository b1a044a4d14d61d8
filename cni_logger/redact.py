"""Keep secrets and oversized values out of the audit trail.

Network configs carry credentials in practice: Calico substitutes a service-account token into its
netconf, Linkerd's list carried ``k8s_auth_token``, Multus points at kubeconfigs, and containerd
passes every pod annotation in ``runtimeConfig``. Masking is by key name (anywhere in the tree) and
by value shape, so a secret under an unexpected key is still caught when it looks like one.

**Key names** are split into words (``AWSSecretKey`` -> aws/secret/key, ``k8s_auth_token``,
``X-Api-Key``, ``client-key-data``) and matched word by word, never by substring: ``keyring``,
``monkey``, ``author`` and ``certainty`` are not secrets, and an auditor who loses them loses real
data. Three kinds of secret word (see ``DEFAULT_REDACT_KEYS``):

* ``ANYWHERE`` words (``password``, ``token``, ``secret``...) make a key secret wherever they stand,
  also plural or glued to a prefix (``PGPASSWORD``, ``clientsecret``) — unless the key's last word
  says it names *something about* the secret (``tokenBucketRate``, ``passwordFile``, ``secretName``:
  ``DESCRIPTORS``);
* ``LAST_WORD`` words (``key``, ``cert``, ``pass``, ``pin``, ``sig``, ``psk``...) only as the last word,
  the thing the value is: ``privateKey``, ``db_pass`` and ``wifiPsk`` (a WPA or IPsec pre-shared key)
  yes, ``keyPrefix``, ``certDir``, ``pinCpus`` and ``pskIdentity`` no; ``key`` also needs a qualifier
  that is not a lookup key (``apiKey`` yes; ``key`` alone — the label name in ``args.cni.labels`` —
  and ``sortKey``, ``publicKey`` no);
* trailing ``CARRIERS`` (``data``, ``value``, ``pem``...) say the value *is* the thing before them:
  ``client-key-data`` is a key, ``tokenFileContent`` is a token.

Booleans are never masked (one bit hides nothing and ``auth: false`` matters to an auditor).

**Value shapes** are recognised wherever they occur, under any key and inside longer text:
credentials in URLs, JWTs, PEM blocks, base64-encoded PEM blocks (at any of the three byte alignments
of a longer base64 payload), kubeconfigs, Docker configs (``{"auths": ...}``, what
``.dockerconfigjson`` holds) and GCP service-account keys (``"private_key"``), ``Bearer``/``Basic``
credentials, ``name: value`` and ``name=value`` pairs whose name is secret by the rules above
(headers, DSNs, query strings such as Azure SAS ``sig=``, ``CNI_ARGS``-like text, inline
kubeconfigs, ``psk="..."`` of wpa_supplicant), ``--password x`` / ``-p x`` / glued ``-pPASSWORD`` and
the password of ``-u user:pass`` / ``--user user:pass`` (curl) on command lines and in argument lists,
provider tokens by their documented prefixes (AWS access key ids, GitHub, GitLab, Slack, ...) and
40-character AWS secret keys next to an access key id or under an ``aws`` name.

The regular expressions are compiled only when a cheap substring test says a string may hold that
shape: most strings in an event hold none, and compiling costs start-up time.

Every string is also made safe to encode: environment values and JSON strings may hold lone
surrogates (undecodable bytes), which would make the rendered line unencodable.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

ANYWHERE = ("password", "passwd", "pwd", "passphrase", "secret", "token", "credential", "creds", "kubeconfig",
            "auth", "authorization", "authorisation", "bearer", "cookie")
LAST_WORD = ("key", "cert", "certificate", "pass", "pin", "sig", "signature", "psk")
DEFAULT_REDACT_KEYS: tuple[str, ...] = (*ANYWHERE, *LAST_WORD, "apikey", "privatekey")
"""The built-in secret words of key names (see the module docstring for how each kind matches).

``apikey`` and ``privatekey`` name the glued spellings (``apikey``, ``PRIVATEKEY``), which match as
``key`` qualified by ``api``/``private``. A ``redactKeys`` entry that is none of these words is a
substring of the folded key name (``fold_key``), as the operator wrote it."""

DESCRIPTORS = frozenset((
    "rate", "burst", "bucket", "size", "limit", "length", "len", "min", "max", "count", "ttl", "timeout",
    "interval", "period", "duration", "expiry", "expires", "expiration", "age", "lifetime", "dir", "directory",
    "path", "file", "filename", "prefix", "suffix", "name", "ref", "reference", "type", "kind", "format", "mode",
    "enabled", "enable", "disabled", "required", "policy", "header", "field", "env", "source", "mount", "url",
    "uri", "endpoint", "server", "host", "port", "audience", "issuer", "scope", "scopes", "algorithm", "alg",
    "version", "provider", "method", "strategy", "location", "namespace", "rotation", "refresh",
))
"""Last words that make a key name *about* a secret, not the secret (``tokenTTL``, ``secretName``)."""
CARRIERS = frozenset((
    "data", "value", "values", "b64", "base64", "pem", "der", "material", "string", "str", "content",
    "contents", "bytes", "text", "raw", "hex", "blob", "encoded", "plain", "plaintext", "cleartext", "code",
    "literal",
))
"""Trailing words that say the value is the thing named before them (``client-key-data``)."""
KEY_NOT_SECRET = frozenset((
    "public", "pub", "sort", "partition", "primary", "foreign", "label", "labels", "routing", "cache", "lookup",
    "idempotency", "map", "group", "node", "object", "row", "column", "index", "selector", "annotation",
    "annotations", "tag", "field", "match", "unique", "composite", "shard", "dedup", "topology", "hash",
    "range", "name", "metadata", "config",
))
"""Qualifiers of ``key`` naming a lookup key or a public key, not a secret one (``sortKey``)."""
GLUED_QUALIFIERS = frozenset((
    "api", "private", "secret", "access", "auth", "ssh", "client", "signing", "encryption", "master", "shared",
    "preshared", "account", "storage", "session", "license", "hmac", "tls", "ssl", "root", "admin", "db", "user",
    "service", "app", "pass",
))
"""Prefixes that make a glued ``...key``/``...cert``/``...pass`` secret (``apikey``, ``dbpass``, not ``monkey``)."""

MASK = "[REDACTED]"
MAX_STRING_CHARS = 2048
"""Longer strings are cut: a single value must not push an event past the line limit."""
MAX_ITEMS = 256
"""Longer lists and objects are cut, with a marker saying how much was left out."""
MAX_DEPTH = 24
POD_ANNOTATIONS_KEY = "io.kubernetes.cri.pod-annotations"
NAME_FIELDS = ("name", "key", "header")
"""In ``{"name": "Authorization", "value": "..."}`` and the conventions' ``{"key": ..., "value": ...}``
labels, the entry named by these fields is secret when the name is; the name itself is kept."""
VALUE_FIELDS = ("value", "values")

# -- value shapes: triggers (plain substrings) and the patterns they enable, compiled on first use ----

_URL_CREDENTIALS = r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/@\s]+@"
_JWT = r"\beyJ[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]*"
_PEM = r"(?s)-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)"
BASE64_SECRET_STARTS = (
    "LS0tLS1CRUdJ",  # -----BEGIN (kubeconfig *-data fields, TLS secrets)
    "YXBpVmVyc2lv",  # apiVersion (a kubeconfig, base64-encoded whole)
    "a2luZDogQ29uZmln",  # kind: Config
    "Y2x1c3RlcnM6",  # clusters:
    "Y3VycmVudC1jb250ZXh0",  # current-context
    "LS0tCmFwaVZlcnNp",  # ---\napiVersion
    "eyJhcGlWZXJzaW9u",  # {"apiVersion"
)
"""The base64 encodings of how PEM blocks and kubeconfigs begin: a blob starting so decodes to one."""
BASE64_MARKERS = (
    "LS0tQkVH", "LS0tLUJFR0lO",  # -----BEGIN at byte offset 1 and 2 (mod 3) of the decoded data
    "ImF1dGhz", "dXRocyI6", "YXV0aHMi",  # "auths": (a Docker config: .dockerconfigjson) at offsets 0, 1, 2
    "InByaXZhdGVfa2V5", "cml2YXRlX2tl", "cHJpdmF0ZV9rZXki",  # "private_key" (a GCP service-account key)
)
"""The base64 text of secret markers *inside* a payload, one per alignment: what the encoding of a marker
looks like depends on its byte offset mod 3, and only the groups wholly inside the marker are the same
in every payload. A blob holding one is decoded and masked if it holds the marker (``DECODED_MARKERS``)."""
DECODED_MARKERS = (b"-----BEGIN", b'"auths":', b'"private_key"')
BASE64_TRIGGERS = (*BASE64_SECRET_STARTS, *BASE64_MARKERS)
_BASE64_RUN = r"[A-Za-z0-9+/\-_]{16,}=*"
_BASE64_BLOB = r"(?:" + "|".join(BASE64_SECRET_STARTS) + r")[A-Za-z0-9+/=\-_]*"
AWS_KEY_PREFIXES = ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA",
                    "ASCA")
"""How AWS access key ids (and other IAM unique ids) begin: four letters, then 16 upper-case letters or digits."""
TOKEN_PREFIXES = (
    *AWS_KEY_PREFIXES, "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "gldt-", "glrt-", "glptt-",
    "glcbt-", "gloas-", "glsoat-", "glft-", "glimt-", "glagent-", "xoxb-", "xoxp-", "xoxa-", "xoxs-",
    "xoxr-", "xoxe.", "xapp-", "AIza", "npm_", "sk_live_", "rk_live_", "sk_test_", "rk_test_", "hvs.", "hvb.",
    "hvr.", "SG.", "pypi-AgE", "hooks.slack.com/",
)
"""Substrings that every provider token shape below starts with (the cheap test before ``_TOKENS``)."""
_AWS_KEY_ID = r"\b(?:" + "|".join(AWS_KEY_PREFIXES) + r")[A-Z0-9]{16}\b"
_TOKENS = "|".join((
    _AWS_KEY_ID,
    r"\bgh[pousr]_[A-Za-z0-9]{30,}", r"\bgithub_pat_[A-Za-z0-9_]{30,}",
    r"\bgl(?:pat|dt|rt|ptt|cbt|oas|soat|ft|imt|agent)-[A-Za-z0-9_\-]{20,}",
    r"\bxox(?:[abprs]|e\.xox[bp])-[A-Za-z0-9\-]{10,}", r"\bxapp-\d-[A-Za-z0-9\-]{10,}",
    r"(?i:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_\-]+",
    r"\bAIza[0-9A-Za-z_\-]{35}", r"\bnpm_[A-Za-z0-9]{36}", r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"\bhv[sbr]\.[A-Za-z0-9_\-]{24,}", r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",
    r"\bpypi-AgE[A-Za-z0-9_\-]{50,}",
))
_AWS_SECRET = r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
_SCHEMES = r"(?:bearer|basic|digest|negotiate|ntlm|token|aws4-hmac-sha256)"
_NAME = r"[A-Za-z0-9_.\-]*[A-Za-z0-9]"
# "Authorization: Bearer x", "    token: x" — a name starting a line, then ':': the rest of the line.
_HEADER_LINE = r"(?im)^([ \t]*[\"']?)(" + _NAME + r")([\"']?[ \t]*:[ \t]*)(" + _SCHEMES + r"[ \t]+)?(\S[^\r\n]*)"
# "password=x", "sig=x&", "DB_PWD=x;", "'token': 'x'" inside text: a name and a separator, then (if the
# name is secret) the value up to the next separator. Two patterns, so a pair whose name is not secret
# (``https:``) never swallows the secret one after it.
_PAIR_NAME = r"(?<![A-Za-z0-9_.\-])(" + _NAME + r")([\"']?\s*[:=]\s*)"
_PAIR_VALUE = r"(?i)(" + _SCHEMES + r"\s+)?(\"[^\"]*\"|'[^']*'|[^\s,;&\"'<>]+)"
# "--password x", "-p x" on a command line.
_FLAG = r"(?<![^\s\"'\[(,])(--?[A-Za-z][A-Za-z0-9_.\-]*)(\s+)([^\s\-][^\s\"',;]*|\"[^\"]*\"|'[^']*')"
_AUTH_SCHEME = r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/\-]+=*)"
_PAIR_TRIGGERS = ("pass", "pwd", "secret", "token", "cred", "kubeconfig", "auth", "bearer", "cookie", "key",
                  "cert", "pin", "sig", "psk")
PASSWORD_FLAGS = frozenset(("-p",))
"""Short flags that take a password (mysql, mysqldump ...): their next argument is masked — unless it is a
protocol or a port (``iptables -p tcp``, ``docker -p 8080:80``): a password of at most five digits there
is the price of not masking every port mapping."""
# "-pPASSWORD" glued (mysql, mysqldump), checked by ``glued_password``.
_GLUED_P = r"(?<![^\s\"'\[(,])-p([^\s\"',;]+)"
# "curl -u user:pass", "--user user:pass", "--user=user:pass", "-uuser:pass": the password after the first ':'.
_USER_FLAG = r"(?<![^\s\"'\[(,])(-u(?:\s+|=)?|--user(?:\s+|=))([^\s:\"',;]+):([^\s\"',;]+)"
USER_FLAGS = frozenset(("-u", "--user"))
"""Flags whose ``user:password`` value keeps the user and loses the password. ``-u 1000:1000`` (a uid and a
gid for docker and podman) is kept; ``--user app:staff`` loses its group name, the price of curl's form."""
_PROTOCOLS = frozenset(("tcp", "udp", "sctp", "icmp", "icmpv6", "ipv6-icmp", "all", "esp", "ah", "gre"))

_compiled: dict[str, Any] = {}
_word_cache: dict[str, tuple[str, ...]] = {}
_verdict_cache: dict[str, frozenset[str]] = {}


def _regex(pattern: str) -> Any:
    found = _compiled.get(pattern)
    if found is None:
        import re  # only text that may hold a credential pays for compiling

        found = _compiled[pattern] = re.compile(pattern)
    return found


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


# -- key names --------------------------------------------------------------------------------------


def key_words(name: str) -> tuple[str, ...]:
    """``name`` split into lower-case words at separators and case changes.

    ``AWSSecretKey`` -> (aws, secret, key), ``k8s_auth_token`` -> (k8s, auth, token), ``X-Api-Key``
    -> (x, api, key), ``hostIP`` -> (host, ip). Digits stay inside their word (``k8s``, ``s3``).
    """
    cached = _word_cache.get(name)
    if cached is not None:
        return cached
    if name.isalpha() and (name.islower() or name.isupper()):
        words: tuple[str, ...] = (name.lower(),)
    else:
        found: list[str] = []
        start = -1
        for i, char in enumerate(name):
            if not char.isalnum():
                if start >= 0:
                    found.append(name[start:i])
                start = -1
                continue
            if start < 0:
                start = i
            elif char.isupper():
                before = name[i - 1]
                after = name[i + 1] if i + 1 < len(name) else ""
                if before.islower() or before.isdigit() or (before.isupper() and after.islower()):
                    found.append(name[start:i])
                    start = i
        if start >= 0:
            found.append(name[start:])
        words = tuple(word.lower() for word in found)
    if len(_word_cache) < 4096:
        _word_cache[name] = words
    return words


def _matches_anywhere(word: str, secret: str) -> bool:
    """``word`` is ``secret``, its plural, or ends with it glued to a prefix (``pgpassword``)."""
    return word.endswith(secret) or word.endswith(secret + "s")


def secret_words_of(name: str) -> frozenset[str]:
    """The built-in secret words (``DEFAULT_REDACT_KEYS``) that make the key ``name`` secret."""
    cached = _verdict_cache.get(name)
    if cached is not None:
        return cached
    words = list(key_words(name))
    carried = False
    while len(words) > 1 and words[-1] in CARRIERS:
        words.pop()
        carried = True
    fired: set[str] = set()
    if words:
        last = words[-1]
        about = last in DESCRIPTORS and not carried  # the key names something about a secret
        for index, word in enumerate(words):
            for secret in ANYWHERE:
                if _matches_anywhere(word, secret) and (index == len(words) - 1 or not about):
                    fired.add(secret)
        base = last[:-1] if last.endswith("s") and last[:-1] in LAST_WORD else last
        if base == "key":
            if (len(words) > 1 and words[-2] not in KEY_NOT_SECRET) or (len(words) == 1 and carried):
                fired.add("key")
                if len(words) > 1 and words[-2] + "key" in DEFAULT_REDACT_KEYS:
                    fired.add(words[-2] + "key")
        elif base in LAST_WORD:
            fired.add(base)
        else:
            for glued in ("key", "cert", "pass"):
                if base.endswith(glued) and base[: -len(glued)] in GLUED_QUALIFIERS:
                    fired.add(glued)
                    if base in DEFAULT_REDACT_KEYS:
                        fired.add(base)
    verdict = frozenset(fired)
    if len(_verdict_cache) < 4096:
        _verdict_cache[name] = verdict
    return verdict


_BUILTIN = frozenset(DEFAULT_REDACT_KEYS)


def is_secret_key(key: str, secret_keys: Iterable[str]) -> bool:
    """Whether ``key`` is secret by one of ``secret_keys`` (already folded by ``fold_key``).

    A built-in word matches by the word rules above; any other entry (an operator's ``redactKeys``)
    is a substring of the folded key name.
    """
    return Scrubber(secret_keys).secret_key(key)


def is_secret_name(name: str) -> bool:
    """Whether ``name`` (a header, a flag, the name in ``name=value``) is secret by the built-in words."""
    return bool(secret_words_of(name))


# -- value shapes -----------------------------------------------------------------------------------


def _mask_pairs(text: str) -> str:
    """Mask the value of every ``name=value`` / ``name: value`` whose name is secret."""
    values = _regex(_PAIR_VALUE)
    out: list[str] = []
    done = 0
    for match in _regex(_PAIR_NAME).finditer(text):
        if match.start() < done or not is_secret_name(match.group(1)):
            continue
        found = values.match(text, match.end())
        if found is None:
            continue
        value = found.group(2)
        if value.strip("\"'").startswith(MASK):
            continue
        quote = value[0] if value[:1] in "\"'" and len(value) > 1 else ""
        out.append(text[done:found.start(2)] + quote + MASK + quote)
        done = found.end()
    return "".join(out) + text[done:] if out else text


def _mask_header_line(match: Any) -> str:
    lead, name, separator, scheme, _ = match.groups()
    if not is_secret_name(name):
        return str(match.group(0))
    return f"{lead}{name}{separator}{scheme or ''}{MASK}"


def _port_or_protocol(value: str) -> bool:
    """``tcp``, ``8080``, ``8080:80``, ``127.0.0.1:8080:80/udp``: what ``-p`` means outside a password."""
    if value.lower() in _PROTOCOLS:
        return True
    port, _, protocol = value.rpartition("/")
    if port and protocol.lower() in _PROTOCOLS:  # 127.0.0.1:8080:80/udp
        value = port
    runs = "".join(c if c.isdigit() else " " for c in value).split()
    return bool(runs) and all(c.isdigit() or c in ":/-." for c in value) and max(map(len, runs)) <= 5


def glued_password(value: str) -> bool:
    """Whether ``-p`` + ``value`` as one word is a password glued to its flag (``mysql -pS3cret``).

    Not when ``value`` is a port or a protocol (``docker -p8080:80``, ``iptables -ptcp``), nor when it
    reads as the rest of an option name: lower-case letters and hyphens (``-pedantic``, ``-pthread``,
    ``-pipe``, Go-style ``-prefix``, ``-password``), also before ``=`` (``-profile=fast``), nor when it
    is at most three letters (combined short flags: ``cp -pr``, ``ls -pA``). A glued password of
    lower-case letters only, or of three letters or fewer, is the price of keeping them.
    """
    if not value or value[0] == "-" or value.startswith(MASK) or _port_or_protocol(value):
        return False
    name = value.split("=", 1)[0]
    letters = name.replace("-", "")
    return not (letters.isalpha() and (name.islower() or (len(name) <= 3 and "=" not in value)))


def _mask_glued(match: Any) -> str:
    return "-p" + MASK if glued_password(match.group(1)) else str(match.group(0))


def mask_user_password(credentials: str) -> str:
    """``user:pass`` with the password masked; a ``uid:gid`` (digits both) or a masked value as it was."""
    user, _, password = credentials.partition(":")
    if not password or password.startswith(MASK) or (user.isdigit() and password.isdigit()):
        return credentials
    return f"{user}:{MASK}"


def _mask_user_flag(match: Any) -> str:
    flag, user, password = match.groups()
    return str(flag) + mask_user_password(f"{user}:{password}")


def _takes_secret(flag: str, value: str) -> bool:
    """Whether ``flag value`` on a command line passes a secret (``-p tcp`` and ``-p 8080:80`` do not).

    A glued ``-pPASSWORD`` takes nothing: its password is masked where it stands, never the next word.
    """
    if flag in PASSWORD_FLAGS:
        return not _port_or_protocol(value)
    if flag[:2] == "-p" and glued_password(flag[2:]):
        return False
    return len(flag) > 2 and is_secret_name(flag)


def _mask_flag(match: Any) -> str:
    flag, space, value = match.groups()
    return f"{flag}{space}{MASK}" if _takes_secret(flag, value) else str(match.group(0))


def _looks_like_credential(token: str) -> bool:
    """Not a word of prose: it has a digit or a symbol, or it is too long for a word."""
    return len(token) >= 8 and (not token.isalpha() or len(token) >= 20)


def _mask_auth_scheme(match: Any) -> str:
    scheme, space, credential = match.groups()
    if credential.startswith("[REDACTED"):
        return str(match.group(0))
    if scheme.lower() == "basic":
        import binascii

        try:
            decoded = binascii.a2b_base64(credential + "=" * (-len(credential) % 4))
        except (binascii.Error, ValueError):
            return str(match.group(0))
        if b":" not in decoded:
            return str(match.group(0))
    elif not _looks_like_credential(credential):
        return str(match.group(0))
    return f"{scheme}{space}{MASK}"


def _mask_base64_document(match: Any) -> str:
    """A base64 run holding a ``BASE64_MARKERS`` text: masked if it decodes (at any start) to a secret marker."""
    import binascii

    run = str(match.group(0))
    if not any(map(run.__contains__, BASE64_MARKERS)):
        return run
    plain = run.rstrip("=").replace("-", "+").replace("_", "/")
    for start in range(4):  # the run may begin mid-group when base64 text is glued to other words
        body = plain[start:]
        body = body[: len(body) - len(body) % 4]
        try:
            decoded = binascii.a2b_base64(body)
        except (binascii.Error, ValueError):
            continue
        if any(map(decoded.__contains__, DECODED_MARKERS)):
            return MASK
    return run


def _mask_aws_secret(match: Any) -> str:
    text = str(match.group(0))
    has_upper = any(c.isupper() for c in text)
    has_lower = any(c.islower() for c in text)
    has_other = any(c.isdigit() or c in "/+" for c in text)
    return MASK if has_upper and has_lower and has_other else text


def has_aws_key_id(text: str) -> bool:
    """Whether ``text`` holds an AWS access key id (the context that makes a 40-character blob a secret key)."""
    if not any(map(text.__contains__, AWS_KEY_PREFIXES)):
        return False
    return _regex(_AWS_KEY_ID).search(text) is not None


def mask_value_shapes(text: str, aws_context: bool = False) -> str:
    """Mask credentials that are recognisable by their form wherever they appear.

    ``aws_context`` says the text sits next to an AWS access key id or under an ``aws`` name, where a
    40-character base64 word is a secret access key.
    """
    if len(text) < 4:  # no shape fits in fewer characters ("-p x")
        return text
    if "-----BEGIN" in text:
        text = _regex(_PEM).sub(MASK, text)
    if len(text) >= 16 and any(map(text.__contains__, BASE64_TRIGGERS)):  # map: faster than a generator
        if any(map(text.__contains__, BASE64_SECRET_STARTS)):
            text = _regex(_BASE64_BLOB).sub(MASK, text)
        if any(map(text.__contains__, BASE64_MARKERS)):
            text = _regex(_BASE64_RUN).sub(_mask_base64_document, text)
    if "eyJ" in text:
        text = _regex(_JWT).sub(MASK, text)
    aws = aws_context
    if any(map(text.__contains__, TOKEN_PREFIXES)):
        aws = aws or has_aws_key_id(text)
        text = _regex(_TOKENS).sub(MASK, text)
    if "://" in text and "@" in text:
        text = _regex(_URL_CREDENTIALS).sub(lambda m: m.group(1) + MASK + "@", text)
    lower = text.lower()
    pair_words = any(map(lower.__contains__, _PAIR_TRIGGERS))
    if ("=" in text or ":" in text) and pair_words:
        if ":" in text:
            text = _regex(_HEADER_LINE).sub(_mask_header_line, text)
        text = _mask_pairs(text)
    if "-" in text:
        short_p = " -p" in text or text.startswith("-p")
        if short_p:
            text = _regex(_GLUED_P).sub(_mask_glued, text)
        if pair_words or short_p:
            text = _regex(_FLAG).sub(_mask_flag, text)
        if "-u" in text and ":" in text:
            text = _regex(_USER_FLAG).sub(_mask_user_flag, text)
    if "bearer" in lower or "basic" in lower:
        text = _regex(_AUTH_SCHEME).sub(_mask_auth_scheme, text)
    if (aws or "aws" in lower) and len(text) >= 40:
        text = _regex(_AWS_SECRET).sub(_mask_aws_secret, text)
    return text


def _cap_string(text: str) -> str:
    if len(text) <= MAX_STRING_CHARS:
        return text
    return f"{text[:MAX_STRING_CHARS]}...[truncated {len(text) - MAX_STRING_CHARS} characters]"


def _is_flag_taking_secret(item: Any, value: Any) -> bool:
    """``--password`` / ``-p`` as one element of an argument list, ``value`` the next element."""
    return (isinstance(item, str) and isinstance(value, str | int) and item[:1] == "-" and "=" not in item
            and " " not in item and _takes_secret(item, str(value)))


def _is_user_flag(item: Any) -> bool:
    return isinstance(item, str) and item in USER_FLAGS


def _aws_context(siblings: Iterable[Any]) -> bool:
    """Whether a secret-key-sized string has an AWS access key id beside it (``{"id": "AKIA...", ...}``)."""
    texts = [v for v in siblings if isinstance(v, str)]
    return any(len(v) >= 40 for v in texts) and any(has_aws_key_id(v) for v in texts)


def _has_secret(item: Any) -> bool:
    return item not in (None, "", [], {}) and not isinstance(item, bool)


class Scrubber:
    """Passes over values with one set of secret key words (see ``scrub``): made once, used for many values."""

    __slots__ = ("extra", "keys")

    def __init__(self, secret_keys: Iterable[str]) -> None:
        keys = frozenset(secret_keys)
        self.keys = keys & _BUILTIN
        self.extra = tuple(k for k in keys if k not in _BUILTIN)

    def secret_key(self, name: str) -> bool:
        """``is_secret_key`` with the key words sorted once for the whole value."""
        if self.keys and not self.keys.isdisjoint(secret_words_of(name)):
            return True
        return bool(self.extra) and any(map(fold_key(name).__contains__, self.extra))

    def text(self, value: str, aws: bool = False) -> str:
        return _cap_string(mask_value_shapes(safe_text(value), aws))

    def value(self, value: Any, depth: int, aws: bool = False) -> Any:
        if isinstance(value, str):
            return self.text(value, aws)
        if isinstance(value, bool | int | float) or value is None:
            return value
        if depth >= MAX_DEPTH:
            return "[truncated: nested too deep]"
        if isinstance(value, dict):
            return self.mapping(value, depth)
        if isinstance(value, list | tuple):
            return self.sequence(value, depth)
        return _cap_string(safe_text(repr(value)))

    def mapping(self, value: dict[Any, Any], depth: int) -> dict[str, Any]:
        aws = _aws_context(value.values())
        named_secret = any(isinstance(value.get(field), str) and is_secret_name(value[field])
                           for field in NAME_FIELDS) and any(field in value for field in VALUE_FIELDS)
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["[truncated]"] = f"{len(value) - MAX_ITEMS} more keys"
                break
            name = _cap_string(safe_text(str(key)))
            if key == POD_ANNOTATIONS_KEY and isinstance(item, dict):
                out[name] = {_cap_string(safe_text(str(k))): MASK for k in item}
            elif _has_secret(item) and (self.secret_key(name) or (named_secret and key in VALUE_FIELDS)):
                out[name] = MASK
            else:
                out[name] = self.value(item, depth + 1, aws or "aws" in key_words(name))
        return out

    def sequence(self, value: list[Any] | tuple[Any, ...], depth: int) -> list[Any]:
        kept = value[:MAX_ITEMS]
        aws = _aws_context(kept)
        pair = (len(kept) == 2 and isinstance(kept[0], str) and kept[0][:1] != "-"
                and " " not in kept[0] and is_secret_name(kept[0]))  # ["Authorization", "Bearer x"]
        items: list[Any] = []
        for index, item in enumerate(kept):
            after_flag = index > 0 and (_is_flag_taking_secret(kept[index - 1], item) or (pair and index == 1))
            if after_flag and _has_secret(item) and not isinstance(item, dict | list):
                items.append(MASK)
            elif index > 0 and isinstance(item, str) and ":" in item and _is_user_flag(kept[index - 1]):
                items.append(self.text(mask_user_password(item)))  # ["curl", "-u", "user:pass"]
            else:
                items.append(self.value(item, depth + 1, aws))
        if len(value) > MAX_ITEMS:
            items.append(f"[truncated: {len(value) - MAX_ITEMS} more items]")
        return items


def scrub(value: Any, secret_keys: Iterable[str], depth: int = 0) -> Any:
    """Return a copy of ``value`` with secrets masked, sizes capped and text made encodable.

    Values of keys named secret by ``secret_keys`` are masked whole (``()``: by shape only).
    """
    return Scrubber(secret_keys).value(value, depth)
