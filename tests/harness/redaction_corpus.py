"""The redaction corpus: secret shapes that must be masked and look-alikes that must not.

Each case is named for what it represents. ``SECRETS`` maps a name to config entries (merged into a
network config) or ``CNI_ARGS`` pairs, and the secret strings that must not survive anywhere in the
event, and the strings beside them that must survive (``kept``); ``LOOKALIKES`` maps a name to config
entries that must be recorded unchanged. The values are made up but shaped like the real thing
(lengths, prefixes, alphabets), and each secret is distinct so that a leak names its case. Used in
process (tests/plugin/test_redact_corpus.py) and through the real plugin
(tests/system/reliability/test_secret_corpus.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
from dataclasses import dataclass, field
from typing import Any

ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
BASE64 = ALNUM + "+/"


def rnd(seed: str, length: int, alphabet: str = ALNUM) -> str:
    """A fixed pseudo-random string for ``seed``: the same corpus on every run."""
    generator = random.Random(hashlib.sha256(seed.encode()).digest())
    return "".join(generator.choice(alphabet) for _ in range(length))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(seed: str) -> str:
    """A distinctive password-like value: mixed case, digits and a symbol."""
    return f"{rnd(seed, 14)}-S3c!"


def aws_secret_key(seed: str) -> str:
    value = rnd(seed, 40, BASE64)
    return value[:10] + "/" + value[11:20] + "+" + value[21:]  # real ones nearly always have / or +


def jwt(seed: str) -> str:
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'kid': rnd(seed, 8)})}.{part({'sub': seed})}.{rnd(seed + 'sig', 43, ALNUM + '-_')}"


def pem(label: str, seed: str) -> str:
    return f"-----BEGIN {label}-----\n{rnd(seed, 64, BASE64)}\n{rnd(seed + '2', 40, BASE64)}=\n-----END {label}-----\n"


@dataclass(frozen=True)
class Case:
    config: dict[str, Any] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    cni_args: dict[str, str] = field(default_factory=dict)
    """For ``CNI_ARGS`` cases: the pairs the runtime sends (scrubbed as ``cni.args``)."""
    kept: tuple[str, ...] = ()
    """Strings beside the secret that must be recorded unchanged (the argument after a glued ``-pPASSWORD``)."""


def _kubeconfig(token: str, client_key: str) -> str:
    return (f"apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://10.96.0.1:443\n  name: local\n"
            f"users:\n- name: cni\n  user:\n    token: {token}\n    client-key-data: {b64(client_key)}\n"
            "contexts:\n- context:\n    cluster: local\n    user: cni\n  name: cni\ncurrent-context: cni\n")


def _secrets() -> dict[str, Case]:
    s = secret
    cases: dict[str, Case] = {}

    def key(name: str, key_name: str, value: Any | None = None) -> None:
        value = s(name) if value is None else value
        cases[name] = Case({key_name: value}, (str(value),))

    # -- by key name: the words of the key -------------------------------------------------------
    for name, key_name in [
        ("password-plain", "password"), ("passwd-unix", "passwd"), ("pwd-short", "pwd"), ("db-pwd-snake", "db_pwd"),
        ("pass-alone", "pass"), ("redis-pass-camel", "redisPass"), ("db-pass-glued", "dbpass"),
        ("passphrase-alone", "passphrase"), ("ssh-passphrase-camel", "sshPassphrase"), ("secret-alone", "secret"),
        ("client-secret-camel", "clientSecret"), ("client-secret-snake", "client_secret"),
        ("client-secret-glued", "clientsecret"), ("api-key-camel", "apiKey"), ("api-key-snake", "api_key"),
        ("api-key-header-name", "X-Api-Key"), ("api-key-glued", "apikey"), ("private-key-camel", "privateKey"),
        ("private-key-snake", "private_key"), ("access-key-camel", "accessKey"), ("ssh-key", "sshKey"),
        ("signing-key", "signingKey"), ("encryption-key-kebab", "encryption-key"),
        ("wireguard-preshared-key", "presharedKey"), ("kubeconfig-client-key-data", "client-key-data"),
        ("key-data-carrier", "keyData"), ("token-alone", "token"), ("calico-k8s-auth-token", "k8s_auth_token"),
        ("access-token-camel", "accessToken"), ("refresh-token-snake", "refresh_token"),
        ("bearer-token-camel", "bearerToken"), ("session-token-upper", "SESSION_TOKEN"), ("bearer-alone", "bearer"),
        ("cookie-alone", "cookie"), ("set-cookie-header-name", "Set-Cookie"), ("creds-short", "creds"),
        ("tls-cert-snake", "tls_cert"), ("client-certificate-data", "client-certificate-data"),
        ("pgpassword-env-glued", "PGPASSWORD"), ("mysql-root-password-env", "MYSQL_ROOT_PASSWORD"),
        ("token-value-carrier", "tokenValue"), ("secret-string-carrier", "secretString"),
        ("token-file-content-carrier", "tokenFileContent"), ("password-hash", "passwordHash"),
        ("vault-approle-secret-id", "secret_id"), ("oauth-glued", "oauth"), ("authorisation-british", "Authorisation"),
        ("sig-alone", "sig"), ("signature-alone", "signature"), ("aws-secret-key-pascal", "AWSSecretKey"),
        ("aws-secret-access-key-env", "AWS_SECRET_ACCESS_KEY"), ("psk-alone", "psk"), ("wifi-psk-camel", "wifiPsk"),
        ("ipsec-psk-snake", "ipsec_psk"), ("psk-data-carrier", "pskData"),
    ]:
        key(name, key_name)
    key("pin-string", "pin", "73916428")
    key("sim-pin-number", "simPin", 84027539)
    key("pin-code-carrier", "pinCode", "60517342")
    cases["tokens-list"] = Case({"tokens": [s("tokens-1"), s("tokens-2")]}, (s("tokens-1"), s("tokens-2")))
    cases["auth-object"] = Case({"auth": {"username": "cni", "note": s("auth-object")}}, (s("auth-object"),))
    cases["credentials-object"] = Case({"credentials": {"user": "cni", "blob": s("credentials")}}, (s("credentials"),))
    cases["kubeconfig-path"] = Case({"kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig"},
                                    ("/etc/cni/net.d/multus.d/multus.kubeconfig",))
    cases["nested-deep-password"] = Case({"a": {"b": [{"c": {"password": s("deep")}}]}}, (s("deep"),))
    cases["authorization-header-key"] = Case({"Authorization": f"Bearer {s('authz')}"}, (s("authz"),))
    cases["proxy-authorization-header-key"] = Case({"Proxy-Authorization": f"Basic {b64('proxy:' + s('proxyauth'))}"},
                                                   (b64("proxy:" + s("proxyauth")),))

    # -- name/value objects and pairs whose *name* is secret ---------------------------------------
    cases["label-with-secret-name"] = Case({"args": {"cni": {"labels": [{"key": "db-password", "value": s("label")}]}}},
                                           (s("label"),))
    cases["header-object-list"] = Case({"headers": [{"name": "Authorization", "value": f"Bearer {s('hdrobj')}"}]},
                                       (s("hdrobj"),))
    cases["env-var-object-list"] = Case({"env": [{"name": "DB_PASSWORD", "value": s("envobj")}]}, (s("envobj"),))
    cases["header-pair-list"] = Case({"headers": [["Authorization", f"Bearer {s('hdrpair')}"]]}, (s("hdrpair"),))

    # -- header values and lines --------------------------------------------------------------------
    cases["header-line-bearer"] = Case({"headers": ["Accept: application/json", f"Authorization: Bearer {s('hdr1')}"]},
                                       (s("hdr1"),))
    cases["header-line-basic"] = Case({"header": f"Authorization: Basic {b64('admin:' + s('hdr2'))}"},
                                      (b64("admin:" + s("hdr2")),))
    cases["header-line-x-auth-token"] = Case({"headers": [f"X-Auth-Token: {s('hdr3')}"]}, (s("hdr3"),))
    cases["header-line-cookie"] = Case({"headers": [f"Cookie: session={s('hdr4')}; theme=dark"]}, (s("hdr4"),))
    cases["header-line-api-key"] = Case({"headers": [f"x-api-key: {s('hdr5')}"]}, (s("hdr5"),))
    cases["bearer-value-alone"] = Case({"value": f"Bearer {s('bearer1')}"}, (s("bearer1"),))
    cases["basic-value-alone"] = Case({"value": f"Basic {b64('user:' + s('basic1'))}"}, (b64("user:" + s("basic1")),))

    # -- argument lists and command lines -----------------------------------------------------------
    cases["argv-long-password"] = Case({"args": ["--password", s("argv1")]}, (s("argv1"),))
    cases["argv-short-p"] = Case({"args": ["mysql", "-u", "root", "-p", s("argv2")]}, (s("argv2"),))
    cases["argv-password-equals"] = Case({"args": [f"--password={s('argv3')}"]}, (s("argv3"),))
    cases["argv-db-password"] = Case({"args": ["--db-password", s("argv4")]}, (s("argv4"),))
    cases["argv-token"] = Case({"args": ["--token", s("argv5")]}, (s("argv5"),))
    cases["argv-client-secret"] = Case({"command": ["oauth2-proxy", "--client-secret", s("argv6")]}, (s("argv6"),))
    cases["command-line-short-p"] = Case({"command": f"mysql -u root -p {s('cmd1')} -h db"}, (s("cmd1"),))
    cases["command-line-password-space"] = Case({"command": f"cli --password {s('cmd2')} --verbose"}, (s("cmd2"),))
    cases["command-line-api-key-equals"] = Case({"cmd": f"curl --api-key={s('cmd3')} https://api.example.com"},
                                                (s("cmd3"),))

    glued = f"{rnd('glued-token', 9)}Token7"  # holds a secret word: once masked the *next* argument instead
    cases["argv-glued-short-p"] = Case({"args": ["mysql", "-u", "root", f"-p{s('glued1')}", "shopdb"]},
                                       (s("glued1"),), kept=("shopdb",))
    cases["argv-glued-short-p-secret-word"] = Case({"args": ["mysql", f"-p{glued}", "inventorydb"]}, (glued,),
                                                   kept=("inventorydb",))
    glued2 = f"{rnd('glued-pass', 8)}Password1"
    cases["command-line-glued-short-p"] = Case({"command": f"mysqldump -uroot -p{glued2} warehousedb"}, (glued2,),
                                               kept=("warehousedb",))
    cases["command-line-curl-user"] = Case({"command": f"curl -u robot:{s('curl1')} https://registry.example"},
                                           (s("curl1"),), kept=("robot:",))
    cases["argv-curl-user-long"] = Case({"args": ["curl", "--user", f"robot:{s('curl2')}", "https://x.example"]},
                                        (s("curl2"),), kept=("robot:", "https://x.example"))
    cases["argv-curl-user-glued"] = Case({"args": ["curl", f"-urobot:{s('curl3')}", "https://x.example"]},
                                         (s("curl3"),), kept=("-urobot:",))
    cases["command-line-curl-user-equals"] = Case({"command": f"curl --user=robot:{s('curl4')} https://x.example"},
                                                  (s("curl4"),), kept=("--user=robot:",))

    # -- AWS ----------------------------------------------------------------------------------------
    key_id, temp_id = "AKIA" + rnd("akia", 16, UPPER_ALNUM), "ASIA" + rnd("asia", 16, UPPER_ALNUM)
    cases["aws-access-key-id-neutral"] = Case({"id": key_id}, (key_id,))
    cases["aws-temporary-key-id"] = Case({"identity": temp_id}, (temp_id,))
    cases["aws-key-pair-under-other-names"] = Case({"s3": {"id": "AKIA" + rnd("pair", 16, UPPER_ALNUM),
                                                          "value": aws_secret_key("pair")}},
                                                   ("AKIA" + rnd("pair", 16, UPPER_ALNUM), aws_secret_key("pair")))
    cases["aws-secret-in-text"] = Case({"note": f"aws configure set aws_secret_access_key {aws_secret_key('text')}"},
                                       (aws_secret_key("text"),))
    ini_id = "AKIA" + rnd("ini", 16, UPPER_ALNUM)
    cases["aws-credentials-ini"] = Case({"file": f"[default]\naws_access_key_id = {ini_id}"
                                                 f"\naws_secret_access_key = {aws_secret_key('ini')}\n"},
                                        (ini_id, aws_secret_key("ini")))
    cases["aws-key-id-and-secret-in-list"] = Case({"pair": ["AKIA" + rnd("list", 16, UPPER_ALNUM),
                                                            aws_secret_key("list")]},
                                                  ("AKIA" + rnd("list", 16, UPPER_ALNUM), aws_secret_key("list")))

    # -- provider tokens by their documented shapes -------------------------------------------------
    tokens = {
        "github-classic-pat": "ghp_" + rnd("ghp", 36), "github-oauth-token": "gho_" + rnd("gho", 36),
        "github-user-to-server": "ghu_" + rnd("ghu", 36), "github-server-to-server": "ghs_" + rnd("ghs", 36),
        "github-refresh-token": "ghr_" + rnd("ghr", 36),
        "github-fine-grained-pat": f"github_pat_{rnd('ghfg', 22)}_{rnd('ghfg2', 59)}",
        "gitlab-personal-token": "glpat-" + rnd("glpat", 20, ALNUM + "_-"),
        "gitlab-runner-token": "glrt-" + rnd("glrt", 20, ALNUM + "_-"),
        "gitlab-deploy-token": "gldt-" + rnd("gldt", 20, ALNUM + "_-"),
        "slack-bot-token": f"xoxb-{rnd('xb1', 11, string.digits)}-{rnd('xb2', 13, string.digits)}-{rnd('xb3', 24)}",
        "slack-user-token": f"xoxp-{rnd('xp1', 11, string.digits)}-{rnd('xp2', 12, string.digits)}-{rnd('xp3', 32)}",
        "slack-workspace-token": f"xoxa-2-{rnd('xa1', 11, string.digits)}-{rnd('xa2', 32)}",
        "slack-app-level-token": f"xapp-1-A{rnd('xapp1', 10, UPPER_ALNUM)}-{rnd('xapp2', 13, string.digits)}-"
                                 f"{rnd('xapp3', 64, '0123456789abcdef')}",
        "google-api-key": "AIza" + rnd("aiza", 35, ALNUM + "_-"),
        "npm-access-token": "npm_" + rnd("npm", 36),
        "stripe-live-secret-key": "sk_live_" + rnd("stripe", 24),
        "vault-service-token": "hvs." + rnd("vault", 90, ALNUM + "_-"),
        "sendgrid-api-key": f"SG.{rnd('sg1', 22, ALNUM + '_-')}.{rnd('sg2', 43, ALNUM + '_-')}",
        "pypi-upload-token": "pypi-AgEIcHlwaS5vcmc" + rnd("pypi", 60, ALNUM + "_-"),
    }
    for name, token in tokens.items():
        cases[name] = Case({"opaque": token}, (token,))
    ghs, ghp = "ghs_" + rnd("ghs-url", 36), "ghp_" + rnd("ghp-prose", 36)
    cases["github-token-in-clone-url"] = Case({"repo": f"https://x-access-token:{ghs}@github.com/org/cni.git"}, (ghs,))
    cases["github-token-in-prose"] = Case({"note": f"rotate {ghp} before Friday"}, (ghp,))
    hook = f"T{rnd('t', 8, UPPER_ALNUM)}/B{rnd('b', 10, UPPER_ALNUM)}/{rnd('hook', 24)}"
    cases["slack-webhook-url"] = Case({"alerts": f"https://hooks.slack.com/services/{hook}"}, (hook,))

    # -- Azure and signed URLs ----------------------------------------------------------------------
    sig = rnd("sas", 43, BASE64).replace("/", "%2F").replace("+", "%2B") + "%3D"
    cases["azure-sas-url"] = Case({"blob": f"https://acct.blob.core.windows.net/cni/log?sv=2022-11-02&ss=b&sp=rl"
                                           f"&se=2030-01-01T00:00:00Z&sig={sig}"}, (sig,))
    sig2 = rnd("sas2", 43, BASE64).replace("/", "%2F") + "%3D"
    cases["azure-sas-token-alone"] = Case({"sas": f"sv=2022-11-02&ss=bfqt&srt=sco&sp=rwdlacup&sig={sig2}"}, (sig2,))
    account_key = rnd("acctkey", 86, BASE64) + "=="
    cases["azure-storage-connection-string"] = Case(
        {"connection": f"DefaultEndpointsProtocol=https;AccountName=cnilogs;AccountKey={account_key};"
                       "EndpointSuffix=core.windows.net"}, (account_key,))
    bus_key = rnd("buskey", 43, BASE64) + "="
    cases["azure-service-bus-connection-string"] = Case(
        {"bus": f"Endpoint=sb://cni.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
                f"SharedAccessKey={bus_key}"}, (bus_key,))
    amz_sig = rnd("amzsig", 64, "0123456789abcdef")
    cases["s3-presigned-url"] = Case(
        {"download": f"https://cni.s3.amazonaws.com/x.tgz?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
                     f"AKIA{rnd('amzid', 16, UPPER_ALNUM)}%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
                     f"&X-Amz-Signature={amz_sig}"}, (amz_sig, "AKIA" + rnd("amzid", 16, UPPER_ALNUM)))

    # -- JWTs, PEM blocks, kubeconfigs, base64 of them ----------------------------------------------
    cases["jwt-under-neutral-key"] = Case({"data": jwt("neutral")}, (jwt("neutral").split(".")[2],))
    cases["jwt-in-prose"] = Case({"note": f"service account said {jwt('prose')} then"}, (jwt("prose").split(".")[2],))
    for name, label in [("pem-rsa-private-key", "RSA PRIVATE KEY"), ("pem-ec-private-key", "EC PRIVATE KEY"),
                        ("pem-openssh-private-key", "OPENSSH PRIVATE KEY"), ("pem-pkcs8-private-key", "PRIVATE KEY")]:
        block = pem(label, name)
        cases[name] = Case({"bundle": block}, (block.split("\n")[1],))
    tls_key = pem("PRIVATE KEY", "b64tls")
    cases["pem-base64-tls-key"] = Case({"tls": {"crt": "/etc/tls.crt", "blob": b64(tls_key)}}, (b64(tls_key)[20:60],))
    for name, document in [
        ("kubeconfig-base64-yaml", _kubeconfig(s("kc1"), "k1")),
        ("kubeconfig-base64-clusters-first", "clusters:\n- cluster:\n    server: https://10.0.0.1\n"
                                             f"users:\n- user:\n    token: {s('kc2')}\n"),
        ("kubeconfig-base64-kind-first", f"kind: Config\napiVersion: v1\nusers:\n- user:\n    token: {s('kc3')}\n"),
        ("kubeconfig-base64-json", json.dumps({"apiVersion": "v1", "kind": "Config",
                                               "users": [{"user": {"token": s("kc4")}}]}, separators=(",", ":"))),
        ("kubeconfig-base64-current-context-first", f"current-context: cni\nusers:\n- user:\n    token: {s('kc5')}\n"),
    ]:
        encoded = b64(document)
        cases[name] = Case({"clusterConfig": encoded}, (encoded[24:64], encoded[-40:]))
    docker = json.dumps({"auths": {"registry.example.com": {"auth": b64("robot:" + s("dockerb64"))}}})
    cases["docker-config-base64-neutral-key"] = Case({"data": b64(docker)}, (b64(docker)[8:48], b64(docker)[-32:]))
    docker_pretty = json.dumps({"auths": {"ghcr.io": {"username": "ci", "password": s("dockerb64p")}}}, indent="\t")
    cases["docker-config-base64-pretty"] = Case({"blob": b64(docker_pretty)}, (b64(docker_pretty)[12:52],))
    gcp = json.dumps({"type": "service_account", "project_id": "cni-logs",
                      "private_key_id": rnd("gcpkid", 40, "0123456789abcdef"), "private_key": pem("PRIVATE KEY", "gcp"),
                      "client_email": "cni@cni-logs.iam.gserviceaccount.com"}, indent=2)
    cases["gcp-service-account-key-base64"] = Case({"data": b64(gcp)}, (b64(gcp)[16:56], b64(gcp)[-40:]))
    for offset in (1, 2):  # the PEM header at byte offset 1 and 2 mod 3 of a longer base64 payload
        payload = "k" * (offset + 5) + "\n" + pem("EC PRIVATE KEY", f"align{offset}")
        cases[f"pem-base64-inside-longer-blob-offset-{offset}"] = Case({"payload": b64(payload)},
                                                                        (b64(payload)[24:64],))
    cases["kubeconfig-inline-yaml"] = Case({"clusterConfig": _kubeconfig(s("inline"), "inline-key")},
                                           (s("inline"), b64("inline-key")))

    # -- credentials inside URLs, DSNs, query strings and CNI_ARGS-like text ------------------------
    cases["url-credentials-https"] = Case({"etcd": f"https://admin:{s('url1')}@etcd.example:2379"}, (s("url1"),))
    cases["url-credentials-redis-no-user"] = Case({"cache": f"redis://:{s('url2')}@redis:6379/0"}, (s("url2"),))
    cases["postgres-keyword-dsn"] = Case({"dsn": f"host=db user=app password={s('dsn1')} dbname=app"}, (s("dsn1"),))
    cases["jdbc-url-password-param"] = Case({"jdbc": f"jdbc:postgresql://db/app?user=app&password={s('dsn2')}"},
                                            (s("dsn2"),))
    cases["query-access-token"] = Case({"api": f"https://api.example.com/v1?access_token={s('qs1')}&v=1"}, (s("qs1"),))
    maps_key = "AIza" + rnd("maps", 35, ALNUM + "_-")
    cases["query-api-key-google"] = Case({"maps": "https://maps.googleapis.com/maps/api/geocode/json?address=x&key="
                                                  + maps_key}, (maps_key,))
    cases["cni-args-style-string"] = Case({"extraArgs": f"IgnoreUnknown=1;DB_PWD={s('cniargstr')}"}, (s("cniargstr"),))
    cases["json-in-string"] = Case({"annotation": json.dumps({"password": s("jsonstr")})}, (s("jsonstr"),))
    cases["wpa-supplicant-psk-line"] = Case({"wpa": f'network={{\n  ssid="home"\n  psk="{s("wpa")}"\n}}'}, (s("wpa"),))
    cases["env-file-lines"] = Case({"envFile": f"FOO=bar\nAPI_TOKEN={s('envline')}\n"}, (s("envline"),))
    cases["docker-config-json-auth"] = Case(
        {"dockerConfig": json.dumps({"auths": {"registry.example.com": {"auth": b64("robot:" + s("docker"))}}})},
        (b64("robot:" + s("docker")),))

    # -- CNI_ARGS pairs -----------------------------------------------------------------------------
    for name, arg in [("cni-args-db-pwd", "DB_PWD"), ("cni-args-k8s-auth-token", "K8S_AUTH_TOKEN"),
                      ("cni-args-api-key", "API_KEY"), ("cni-args-password-lower", "password"),
                      ("cni-args-db-pass", "DB_PASS"), ("cni-args-tls-passphrase", "TLS_PASSPHRASE"),
                      ("cni-args-sim-pin", "SIM_PIN")]:
        cases[name] = Case(cni_args={arg: s(name)}, secrets=(s(name),))
    return cases


def _lookalikes() -> dict[str, dict[str, Any]]:
    return {
        # words that contain a secret word without being one
        "keyring-name": {"keyring": "system"}, "monkey-chaos-setting": {"monkey": "chaos"},
        "turkey-locale": {"turkey": "tr_TR"}, "certainty-score": {"certainty": 0.97},
        "author-name": {"author": "Jane Doe"}, "authors-list": {"authors": ["jane", "joe"]},
        "author-email": {"authorEmail": "jane@example.com"},
        "authority-url": {"authority": "https://login.example.com/tenant"}, "spinlock-kind": {"spinlock": "ticket"},
        "bypass-cidrs": {"bypass": ["10.0.0.0/8"]}, "compass-direction": {"compass": "north"},
        "passive-mode": {"passive": True},
        "keyspace-name": {"keyspace": "cni"},
        "passport-strategy": {"passport": "jwt"},
        "pinned-version": {"pinned": "1.1.1"}, "signal-name": {"signal": "SIGTERM", "design": "flat"},
        # key names about a secret, not the secret
        "cert-dir": {"certDir": "/etc/cni/tls"}, "cert-file-path": {"certFile": "/etc/ssl/certs/server.crt"},
        "key-file-path": {"keyFile": "/etc/ssl/private/server.key"},
        "private-key-file-path": {"privateKeyFile": "/etc/wireguard/private.key"},
        "password-file-path": {"passwordFile": "/run/secrets/db-password"},
        "token-path": {"tokenPath": "/var/run/secrets/kubernetes.io/serviceaccount/token"},
        "bearer-token-file": {"bearerTokenFile": "/var/run/secrets/token"},
        "key-prefix": {"keyPrefix": "cni/"}, "key-id-alias": {"keyId": "alias/cni-logs"},
        "key-name": {"keyName": "cni-signing"}, "token-bucket-rate": {"tokenBucketRate": 1000},
        "token-bucket-burst": {"tokenBucketBurst": 2000},
        "token-bucket-object": {"tokenBucket": {"rate": 10, "burst": 20}},
        "token-ttl-seconds": {"tokenTTL": 3600}, "password-min-length": {"passwordMinLength": 12},
        "secret-name-reference": {"secretName": "db-credentials"},
        "secret-key-ref": {"secretKeyRef": {"name": "db", "key": "password"}},
        "secrets-dir": {"secretsDir": "/run/secrets"},
        "token-header-name": {"tokenHeader": "Authorization"}, "auth-type": {"authType": "basic"},
        "auth-enabled-bool": {"authEnabled": True}, "auth-false": {"auth": False},
        "authorization-mode": {"authorizationMode": "RBAC"}, "credential-provider": {"credentialProvider": "ecr"},
        "cookie-policy": {"cookiePolicy": "strict"}, "pass-through-flag": {"passThrough": True},
        "pin-cpus": {"pinCpus": [0, 1]},
        "certificate-authority-path": {"certificate-authority": "/etc/kubernetes/ca.crt"},
        # keys that are lookup keys or public keys
        "public-key": {"publicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDxU6pub cni@node"},
        "sort-key": {"sortKey": "timestamp"}, "topology-key": {"topologyKey": "kubernetes.io/hostname"},
        "key-value-pair-object": {"key": "tier", "value": "frontend"},
        "conventions-labels": {"args": {"cni": {"labels": [{"key": "app", "value": "web"},
                                                            {"key": "app.kubernetes.io/name", "value": "nginx"}]}}},
        "header-objects-harmless": {"headers": [{"name": "Accept", "value": "application/json"}]},
        "header-lines-harmless": {"headers": ["Accept: application/json", "X-Request-Id: 42"]},
        # prose and values that merely mention secrets
        "prose-basic": {"description": "Basic setup for the bridge network"},
        "prose-bearer": {"description": "Bearer tokens are rotated hourly"},
        "prose-password-word": {"hint": "rotate the password monthly"}, "word-password-as-value": {"field": "password"},
        # argument lists and command lines without secrets
        "argv-port-capital-p": {"args": ["ssh", "-P", "2222", "host"]}, "argv-port-long": {"args": ["--port", "8080"]},
        "argv-token-ttl": {"args": ["--token-ttl", "30m"]},
        "argv-passive-flag": {"args": ["--passive", "ftp.example.com"]},
        "command-line-iptables": {"command": "iptables -t nat -A PREROUTING -p tcp --dport 8080 -j DNAT"},
        "argv-docker-publish": {"args": ["docker", "run", "-p", "8080:80", "nginx"]},
        "argv-docker-publish-glued": {"args": ["docker", "run", "-p8080:80", "-p127.0.0.1:9090:90/udp", "nginx"]},
        "command-line-iptables-glued-protocol": {"command": "iptables -A INPUT -ptcp --dport 22 -j ACCEPT"},
        "argv-compiler-p-flags": {"args": ["cc", "-pedantic", "-pthread", "-pipe", "-o", "cni", "main.c"]},
        "argv-combined-short-flags": {"args": ["cp", "-pr", "/etc/cni", "/backup"], "mkdir": "mkdir -pv /run/x"},
        "argv-go-prefix-flag": {"args": ["tool", "-prefix", "/usr/local", "-profile=fast"]},
        "argv-user-uid": {"args": ["docker", "run", "-u", "1000", "--user", "root", "busybox"]},
        "command-line-user-uid-gid": {"command": "docker run -u 1000:1000 --user=65534:65534 busybox"},
        "psk-identity-and-file": {"pskIdentity": "node-1", "pskFile": "/etc/ipsec.d/psk.txt"},
        "psk-inside-a-word": {"upskilling": "yes"},
        "base64-harmless-json-auths-like": {"data": b64(json.dumps({"auths_enabled": False, "authsource": "ldap"}))},
        "base64-harmless-json-type": {"blob": b64(json.dumps({"type": "user_account", "private": False}))},
        # near misses of token shapes
        "aws-like-short-id": {"id": "AKIA1234"},
        "git-commit-sha": {"commit": "3f786850e387550fdab836ed7e6dc881de23001b"},
        "image-digest": {"image": "docker.io/library/nginx@sha256:" + rnd("digest", 64, "0123456789abcdef")},
        "ghp-too-short": {"note": "ghp_short"}, "gh-pages-branch": {"branch": "gh-pages"},
        "xoxo-greeting": {"note": "xoxo-hugs-and-kisses-from-us"}, "glpat-too-short": {"note": "glpat-abc"},
        "base64-plain-text": {"blob": b64("hello, this is an ordinary base64 payload, nothing to hide")},
        "eyj-prefix-only": {"note": "eyJ is a prefix"}, "begin-without-label": {"note": "-----BEGIN is not a block"},
        "url-without-credentials": {"endpoint": "https://etcd.example:2379/v3"},
        "email-address": {"contact": "ops@example.com"},
        "scoped-package-url": {"registry": "https://example.com/@scope/pkg"},
        "url-query-look-alike": {"link": "https://example.com/signup?design=dark&signal=1&pinned=true"},
        # ordinary network data
        "mac-address": {"mac": "ca:4d:f4:32:50:b1"}, "ipv6-address": {"address": "fd00::1/64"},
        "container-id": {"containerID": rnd("ctr", 64, "0123456789abcdef")},
        "timestamp": {"seen": "2026-11-28T02:20:15Z"},
        "port-mappings": {"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                                              "protocol": "tcp", "hostIP": ""}]}},
        "bandwidth-rates": {"bandwidth": {"ingressRate": 1000, "ingressBurst": 2000}},
    }


SECRETS = _secrets()
LOOKALIKES = _lookalikes()
