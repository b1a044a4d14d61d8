"""Unit tests for cni_logger.redact: secrets by key name and by value shape, encodability, size caps."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from cni_logger import redact
from cni_logger.redact import DEFAULT_REDACT_KEYS

MASK = redact.MASK
# A real-shaped service-account JWT (header {"alg":"RS256","kid":"..."}), not a live credential.
JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6IjRhZjEyMyJ9.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50Iiwic3ViIjoi"
       "c3lzdGVtOnNlcnZpY2VhY2NvdW50Omt1YmUtc3lzdGVtOmNhbGljby1ub2RlIn0.c2lnbmF0dXJlLWJ5dGVzLWhlcmU")
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n"
       "aNQ1p4c3E1s=\n-----END RSA PRIVATE KEY-----")


def scrub(value: Any, keys: tuple[str, ...] = DEFAULT_REDACT_KEYS) -> Any:
    return redact.scrub(value, keys)


def leaves(value: Any) -> list[str]:
    """Every string (keys and values) anywhere in ``value``."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *leaves(v))]
    if isinstance(value, list):
        return [s for item in value for s in leaves(item)]
    return []


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


# -- by key name -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["password", "Password", "db_password", "PASSWD", "clientSecret", "token",
                                 "apiKey", "api_key", "api-key", "tls_cert", "credentials", "kubeconfig",
                                 "authorization", "Bearer", "cookie", "privateKey", "private_key"])
def test_secret_key_names_are_masked(key: str) -> None:
    assert scrub({key: "hunter2", "name": "net"}) == {key: MASK, "name": "net"}


def test_secrets_are_masked_at_any_depth_in_dicts_and_lists() -> None:
    config = {
        "plugins": [
            {"type": "bridge",
             "ipam": {"type": "whereabouts", "etcd": {"password": "p1", "endpoints": ["a"]}}},
            {"type": "custom", "nested": [[{"token": "t1"}], {"deeper": {"x": [{"SECRET": {"a": "b"}}]}}]},
        ],
    }
    out = scrub(config)
    assert out["plugins"][0]["ipam"]["etcd"] == {"password": MASK, "endpoints": ["a"]}
    assert out["plugins"][1]["nested"][0][0] == {"token": MASK}
    assert out["plugins"][1]["nested"][1]["deeper"]["x"][0] == {"SECRET": MASK}
    assert not {"p1", "t1", "b"} & set(leaves(out))


def test_calico_kubernetes_token_is_masked() -> None:
    calico = {
        "type": "calico", "log_level": "info", "datastore_type": "kubernetes", "nodename": "node-1",
        "mtu": 1440, "ipam": {"type": "calico-ipam"}, "policy": {"type": "k8s"},
        "kubernetes": {"k8s_api_root": "https://10.96.0.1:443", "k8s_auth_token": JWT,
                       "kubeconfig": "/etc/cni/net.d/calico-kubeconfig"},
    }
    out = scrub(calico)
    assert out["kubernetes"] == {"k8s_api_root": "https://10.96.0.1:443", "k8s_auth_token": MASK,
                                 "kubeconfig": MASK}
    assert out["policy"] == {"type": "k8s"} and out["mtu"] == 1440 and out["nodename"] == "node-1"
    assert JWT not in json.dumps(out)


def test_multus_kubeconfig_path_is_masked() -> None:
    multus = {"cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus",
              "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
              "delegates": [{"cniVersion": "0.3.1", "name": "default", "plugins": [{"type": "flannel"}]}]}
    out = scrub(multus)
    assert out["kubeconfig"] == MASK
    assert out["delegates"] == multus["delegates"]


def test_empty_secret_values_stay_visible() -> None:
    # An empty or null secret carries nothing to hide, and seeing that it is unset helps debugging.
    assert scrub({"password": "", "token": None, "keys": [], "auth": {}}) == {
        "password": "", "token": None, "keys": [], "auth": {}}


def test_non_string_secret_values_are_masked_whole() -> None:
    assert scrub({"tokens": ["a", "b"], "auth": {"user": "u", "pass": "p"}, "apiKey": 42, "pin": 1234}) == {
        "tokens": MASK, "auth": MASK, "apiKey": MASK, "pin": MASK}


def test_booleans_and_descriptions_of_secrets_are_not_masked() -> None:
    # One bit hides nothing; a key that names something *about* a secret (its rate, file, name) is data.
    config = {"auth": False, "password": True, "keyId": 42, "tokenBucketRate": 100, "secretName": "db-creds"}
    assert scrub(config) == config


def test_only_the_given_key_names_are_used() -> None:
    assert scrub({"password": "p", "pin": "1234"}, ()) == {"password": "p", "pin": "1234"}
    assert scrub({"password": "p", "pin": "1234"}, ("pin",)) == {"password": "p", "pin": MASK}


def test_is_secret_key_ignores_case_and_separators() -> None:
    assert redact.is_secret_key("K8S-AUTH_TOKEN", ("authtoken",))
    assert redact.is_secret_key("Api-Key", ("apikey",))
    assert not redact.is_secret_key("name", DEFAULT_REDACT_KEYS)
    assert not redact.is_secret_key("mtu", DEFAULT_REDACT_KEYS)


# -- by value shape --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("https://admin:s3cret@etcd.example:2379", f"https://{MASK}@etcd.example:2379"),
    ("http://user@proxy.local:3128/", f"http://{MASK}@proxy.local:3128/"),
    ("endpoints: etcd+https://root:pw@10.0.0.1:2379,https://10.0.0.2:2379",
     f"endpoints: etcd+https://{MASK}@10.0.0.1:2379,https://10.0.0.2:2379"),
    ("HTTPS://A:B@host", f"HTTPS://{MASK}@host"),
])
def test_credentials_in_urls_are_masked_under_innocent_keys(text: str, expected: str) -> None:
    assert scrub({"endpoint": text}) == {"endpoint": expected}


@pytest.mark.parametrize("text", ["https://etcd.example:2379/v3", "user@example.com", "mailto:a@b.c",
                                  "https://example.com/@scope/pkg"])
def test_urls_without_credentials_are_unchanged(text: str) -> None:
    assert scrub({"endpoint": text}) == {"endpoint": text}


def test_jwt_under_an_innocent_key_is_masked() -> None:
    out = scrub({"data": JWT, "header": f"Authorisation: Bearer {JWT} (expires)", "list": [JWT]})
    # The JWT is masked by its shape; a header line naming a secret is masked to its end, scheme kept.
    assert out == {"data": MASK, "header": f"Authorisation: Bearer {MASK}", "list": [MASK]}


def test_pem_block_under_an_innocent_key_is_masked() -> None:
    out = scrub({"blob": f"before\n{PEM}\nafter", "cut": PEM[:80]})
    assert out["blob"] == f"before\n{MASK}\nafter"
    assert out["cut"] == MASK  # a PEM block without its END line is masked to the end of the text
    assert "MIIEpAIB" not in json.dumps(out)


def test_secret_shapes_are_masked_even_with_no_key_names() -> None:
    out = scrub({"a": JWT, "b": "https://u:p@h"}, ())
    assert out == {"a": MASK, "b": f"https://{MASK}@h"}


def test_mask_value_shapes_leaves_ordinary_text_alone() -> None:
    text = "eyJ is a prefix; -----BEGIN is not a block without a label; a://b"
    assert redact.mask_value_shapes(text) == text


# -- pod annotations -------------------------------------------------------------------------------


def test_pod_annotation_values_are_masked_but_keys_kept() -> None:
    runtime_config = {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        redact.POD_ANNOTATIONS_KEY: {
            "kubernetes.io/config.seen": "2026-11-28T02:20:15Z",
            "vault.hashicorp.com/agent-inject-secret-db": "database/creds/app",
            "team": "shop",
        },
    }
    out = scrub({"runtimeConfig": runtime_config})
    assert out["runtimeConfig"][redact.POD_ANNOTATIONS_KEY] == {
        "kubernetes.io/config.seen": MASK, "vault.hashicorp.com/agent-inject-secret-db": MASK, "team": MASK}
    assert out["runtimeConfig"]["portMappings"] == runtime_config["portMappings"]


def test_pod_annotations_not_an_object_are_scrubbed_normally() -> None:
    out = scrub({redact.POD_ANNOTATIONS_KEY: ["plain", JWT]})
    assert out == {redact.POD_ANNOTATIONS_KEY: ["plain", MASK]}


# -- encodability ----------------------------------------------------------------------------------


def test_lone_surrogates_are_made_encodable_in_values_and_keys() -> None:
    bad = "ctr\udcff\udc80id"
    out = scrub({bad: bad, "list": [bad, {"k": bad}]})
    text = json.dumps(out, ensure_ascii=False)
    text.encode("utf-8")  # would raise UnicodeEncodeError with a surrogate left
    for s in leaves(out):
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in s), s
        if s.startswith("ctr"):
            assert s.startswith("ctr\ufffd") and s.endswith("id")


def test_safe_text_leaves_valid_text_untouched() -> None:
    text = "naïve ☃ 𝄞 \n\t"
    assert redact.safe_text(text) is text


def test_non_json_values_become_strings() -> None:
    out = scrub({"b": b"bytes", "s": (3,)})
    assert out == {"b": "b'bytes'", "s": [3]}


def test_scalars_pass_unchanged() -> None:
    assert scrub({"i": 1, "f": 1.5, "t": True, "n": None}) == {"i": 1, "f": 1.5, "t": True, "n": None}


# -- size caps -------------------------------------------------------------------------------------


def test_long_strings_are_cut_with_a_marker() -> None:
    out = scrub({"v": "a" * (redact.MAX_STRING_CHARS + 500), "ok": "b" * redact.MAX_STRING_CHARS})
    assert out["v"] == "a" * redact.MAX_STRING_CHARS + "...[truncated 500 characters]"
    assert out["ok"] == "b" * redact.MAX_STRING_CHARS


def test_long_keys_are_cut_too() -> None:
    out = scrub({"k" * 5000: 1})
    (key,) = out
    assert len(key) < 2200 and key.startswith("k" * redact.MAX_STRING_CHARS)


def test_secret_is_masked_before_a_long_string_is_cut() -> None:
    text = "x" * (redact.MAX_STRING_CHARS - 20) + f" https://u:pw@host {JWT}"
    out = scrub({"v": text})["v"]
    assert "pw@" not in out and "eyJhbGci" not in out


def test_long_lists_are_cut_with_a_marker() -> None:
    out = scrub({"l": list(range(redact.MAX_ITEMS + 10))})
    assert out["l"][: redact.MAX_ITEMS] == list(range(redact.MAX_ITEMS))
    assert out["l"][redact.MAX_ITEMS:] == ["[truncated: 10 more items]"]


def test_big_objects_are_cut_with_a_marker() -> None:
    out = scrub({f"k{i}": i for i in range(redact.MAX_ITEMS + 7)})
    assert len(out) == redact.MAX_ITEMS + 1
    assert out["[truncated]"] == "7 more keys"
    assert out["k0"] == 0 and f"k{redact.MAX_ITEMS}" not in out


def test_deep_nesting_is_capped() -> None:
    value: Any = "leaf"
    for _ in range(redact.MAX_DEPTH * 3):
        value = {"a": [value]}
    out = scrub(value)
    assert depth_of(out) <= redact.MAX_DEPTH + 1
    assert "[truncated: nested too deep]" in leaves(out)
    json.dumps(out)


def test_scrub_does_not_change_its_input() -> None:
    original = {"password": "p", "l": list(range(300)), "s": "x" * 5000, "u": "https://a:b@c"}
    copy = json.loads(json.dumps(original))
    scrub(original)
    assert original == copy


def test_redact_depends_on_no_other_module_of_the_plugin() -> None:
    """The secret words and key folding live here; ``settings`` imports them, never the other way round."""
    tree = ast.parse(Path(redact.__file__).read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [name for name in imported if name.startswith("cni_logger")], imported


def test_fold_key_ignores_case_underscores_and_dashes() -> None:
    assert redact.fold_key("X-Api_KEY") == "xapikey"
    assert redact.is_secret_key("X-Api_Key", ("apikey",))


@pytest.mark.parametrize(("value", "expected"), [
    (["mysql", "-pXyzToken7", "shopdb"], ["mysql", f"-p{MASK}", "shopdb"]),
    (["mysql", "-pHunter2!", "shopdb"], ["mysql", f"-p{MASK}", "shopdb"]),
    ("mysqldump -uroot -pAbcPassword1 shopdb", f"mysqldump -uroot -p{MASK} shopdb"),
    (["tool", "-password", "Hunter2!"], ["tool", "-password", MASK]),
    (["docker", "run", "-p8080:80", "-p", "127.0.0.1:9090:90/udp"],
     ["docker", "run", "-p8080:80", "-p", "127.0.0.1:9090:90/udp"]),
    (["cc", "-pedantic-errors", "-pthread", "-pv", "-profile=fast", "-pA"],
     ["cc", "-pedantic-errors", "-pthread", "-pv", "-profile=fast", "-pA"]),
    ("ls -pA /etc && cp -pRv a b", "ls -pA /etc && cp -pRv a b"),
    (["mysql", "-pHUNTER", "db"], ["mysql", f"-p{MASK}", "db"]),
])
def test_a_glued_short_p_password_is_masked_where_it_stands(value: Any, expected: Any) -> None:
    """``-pPASSWORD`` loses its password, never the next argument; ports and option names stay."""
    assert scrub({"command": value}) == {"command": expected}


@pytest.mark.parametrize(("value", "expected"), [
    ("curl -u robot:Hunter2! https://x", f"curl -u robot:{MASK} https://x"),
    ("curl --user=robot:Hunter2! https://x", f"curl --user=robot:{MASK} https://x"),
    ("curl -urobot:Hunter2!", f"curl -urobot:{MASK}"),
    (["curl", "--user", "robot:Hunter2!"], ["curl", "--user", f"robot:{MASK}"]),
    (["curl", "-u", "robot:Hunter2!"], ["curl", "-u", f"robot:{MASK}"]),
    ("docker run -u 1000:1000 --user root x", "docker run -u 1000:1000 --user root x"),
    (["docker", "run", "-u", "1000:1000"], ["docker", "run", "-u", "1000:1000"]),
    ("curl --user-agent x:y", "curl --user-agent x:y"),
])
def test_the_password_of_a_user_flag_is_masked_and_the_user_kept(value: Any, expected: Any) -> None:
    assert scrub({"command": value}) == {"command": expected}


def test_psk_is_a_secret_word_only_as_a_word() -> None:
    assert [bool(redact.secret_words_of(k)) for k in ("psk", "wifiPsk", "ipsec_psk", "PSK", "pskData")] == [True] * 5
    assert [bool(redact.secret_words_of(k)) for k in ("pskIdentity", "pskFile", "upskilling")] == [False] * 3


@pytest.mark.parametrize("marker", [b"-----BEGIN", b'"auths":', b'"private_key"'])
@pytest.mark.parametrize("offset", [0, 1, 2])
def test_base64_markers_are_found_at_every_alignment(marker: bytes, offset: int) -> None:
    """A PEM header, a Docker config's ``"auths":`` and a GCP key's ``"private_key"`` at byte offsets 0, 1, 2.

    Checks the hard-coded ``BASE64_MARKERS``/``BASE64_SECRET_STARTS``: each alignment encodes differently."""
    import base64

    for lead in (b"", b"{\n  ", b"abc"):
        data = lead + b"z" * ((offset - len(lead)) % 3) + marker + b" tail of the document"
        encoded = base64.b64encode(data).decode()
        assert MASK in redact.mask_value_shapes(encoded), (marker, offset, lead)
