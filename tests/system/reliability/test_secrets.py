"""Secrets in real-world config shapes, end to end through the real process: none of the secret values
may appear anywhere in the log file or on stderr (the bytes are searched, raw and JSON-escaped), for
every command and on the error and diagnostic paths too. The environment is never dumped.

``test_checker.py`` shows the search catches a leak when redaction is switched off.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.plugin import cni_env
from tests.harness.reliability import PREV_RESULT, KnownBug, Timed, audit_log, leaked, net_config, run_proc


def b64url(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def jwt(subject: str) -> str:
    """A service-account-token-shaped JWT (header.payload.signature)."""
    header = b64url({"alg": "RS256", "kid": "x2N9aTcYw6mXqYh0GJt2lq"})
    payload = b64url({"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": "kube-system",
                      "sub": f"system:serviceaccount:kube-system:{subject}"})
    signature = base64.urlsafe_b64encode(f"signature-of-{subject}-0123456789".encode() * 3).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


CALICO_TOKEN = jwt("calico-cni-plugin")
LINKERD_TOKEN = jwt("linkerd-cni")
ETCD_PASSWORD = "EtcdPassw0rd-calico-7f3a"
MULTUS_TOKEN = "sha256~Xk3vQp9rT0kenMultusInline-4f1c2d"
CLIENT_KEY_DATA = base64.b64encode(b"-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAmultusclientkey\n"
                                   b"-----END RSA PRIVATE KEY-----\n").decode()
CLIENT_CERT_DATA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIDmultusclientcert\n"
                                    b"-----END CERTIFICATE-----\n").decode()
PEM_KEY_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCinlinePemKeyBody"
VAULT_TOKEN = "hvs.CAESIVaultAnnotationToken0123456789abcdef"
ANNOTATION_PASSWORD = "AnnotationPassw0rd-9d8c"
ANNOTATION_DB_PASSWORD = "DbPassInAnnotation-1b2c"
PROXY_PASSWORD = "ProxyPassw0rd-in-url-5e6f"
REDIS_PASSWORD = "RedisPassw0rd-in-url-3a4b"
MIRROR_PASSWORD = "p%40ssw%2Frd-MirrorEncoded"
PROSE_PASSWORD = "ProsePassw0rd-in-text-8c9d"
ARGS_TOKEN = "ArgsTokenValue-0a1b2c3d4e5f"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRETzz"
ENV_PROXY_PASSWORD = "EnvProxyPassw0rd-6a7b"
SHORT_JWT_SIGNATURE = "kQ7vXc3sHs256ShortSignature-0123456789abcdefg"
SHORT_JWT = f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjbmktbG9nZ2VyIn0.{SHORT_JWT_SIGNATURE}"
"""An HS256 token: short enough to be echoed whole (rejected values are shown up to 200 characters)."""


def multus_kubeconfig(token: str = MULTUS_TOKEN) -> str:
    return (
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://10.96.0.1:443\n"
        "    insecure-skip-tls-verify: true\n  name: local\nusers:\n- name: multus\n  user:\n"
        f"    token: {token}\n    client-certificate-data: {CLIENT_CERT_DATA}\n"
        f"    client-key-data: {CLIENT_KEY_DATA}\n"
        "contexts:\n- context:\n    cluster: local\n    user: multus\n  name: multus-context\n"
        "current-context: multus-context\n"
    )


def calico(log: Path) -> dict[str, Any]:
    return net_config(
        log, name="k8s-pod-network", log_level="info", datastore_type="kubernetes", nodename="node-1",
        mtu=1440, ipam={"type": "calico-ipam"}, policy={"type": "k8s"},
        kubernetes={"kubeconfig": "/etc/cni/net.d/calico-kubeconfig", "k8s_auth_token": CALICO_TOKEN,
                    "k8s_api_root": "https://10.96.0.1:443"},
        etcd_endpoints=f"https://calico:{ETCD_PASSWORD}@10.0.0.10:2379,https://calico:{ETCD_PASSWORD}@10.0.0.11:2379",
    )


def multus(log: Path) -> dict[str, Any]:
    return net_config(
        log, name="multus-cni-network", kubeconfig="/etc/cni/net.d/multus.d/multus.kubeconfig",
        clusterNetwork="k8s-pod-network", logLevel="verbose",
        delegates=[{"cniVersion": "0.3.1", "name": "default-cni-network", "kubeconfig": multus_kubeconfig(),
                    "plugins": [{"type": "flannel", "delegate": {"isDefaultGateway": True}}]}],
    )


def linkerd(log: Path) -> dict[str, Any]:
    return net_config(
        log, name="linkerd-cni", log_level="info",
        policy={"type": "k8s", "k8s_api_root": "https://10.96.0.1:443", "k8s_auth_token": LINKERD_TOKEN},
        kubernetes={"kubeconfig": "/etc/cni/net.d/ZZZ-linkerd-cni-kubeconfig"},
        linkerd={"incoming-proxy-port": 4143, "outgoing-proxy-port": 4140, "proxy-uid": 2102},
    )


def pod_annotations(log: Path) -> dict[str, Any]:
    return net_config(
        log, capabilities={"portMappings": True},
        runtimeConfig={
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "io.kubernetes.cri.pod-annotations": {
                "vault.hashicorp.com/agent-inject-token": VAULT_TOKEN,
                "kubectl.kubernetes.io/last-applied-configuration":
                    json.dumps({"spec": {"env": [{"name": "DB", "value": ANNOTATION_PASSWORD}]}}),
                "example.com/db-url": f"postgres://app:{ANNOTATION_DB_PASSWORD}@db:5432/app",
            },
        },
    )


def urls_and_pem(log: Path) -> dict[str, Any]:
    return net_config(
        log, proxy=f"http://proxyuser:{PROXY_PASSWORD}@proxy.corp:3128",
        cache=f"redis://:{REDIS_PASSWORD}@redis:6379/0",
        mirrors=[f"https://mirror-user:{MIRROR_PASSWORD}@mirror.example.com/path"],
        note=f"fetched from https://admin:{PROSE_PASSWORD}@internal.example.com/cni today",
        tls={"ca": "/etc/ssl/ca.pem",
             "bundle": f"-----BEGIN PRIVATE KEY-----\n{PEM_KEY_BODY}\n-----END PRIVATE KEY-----\n"},
    )


SHAPES = {"calico": calico, "multus": multus, "linkerd": linkerd, "pod-annotations": pod_annotations,
          "urls-and-pem": urls_and_pem}
SECRETS = [
    CALICO_TOKEN, CALICO_TOKEN.split(".")[2], LINKERD_TOKEN, LINKERD_TOKEN.split(".")[2], ETCD_PASSWORD,
    MULTUS_TOKEN, CLIENT_KEY_DATA, CLIENT_KEY_DATA[:40], CLIENT_CERT_DATA[:40], PEM_KEY_BODY, VAULT_TOKEN,
    ANNOTATION_PASSWORD, ANNOTATION_DB_PASSWORD, PROXY_PASSWORD, REDIS_PASSWORD, MIRROR_PASSWORD, PROSE_PASSWORD,
    ARGS_TOKEN, AWS_SECRET, ENV_PROXY_PASSWORD, SHORT_JWT_SIGNATURE,
]
"""Whole values and distinctive pieces of them (a signature alone, the start of a key)."""


def secret_env(command: str, key: str) -> dict[str, str]:
    return cni_env(command, CNI_CONTAINERID=key,
                   CNI_ARGS=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web;K8S_AUTH_TOKEN={ARGS_TOKEN}",
                   AWS_SECRET_ACCESS_KEY=AWS_SECRET, AWS_ACCESS_KEY_ID="AKIAEXAMPLEKEYID0000",
                   HTTPS_PROXY=f"http://envuser:{ENV_PROXY_PASSWORD}@proxy:3128",
                   KUBECONFIG="/root/.kube/config", CNI_LOGGER_RECORD_VERSION="1")


def invocations(config: dict[str, Any], tmp_path: Path, tag: str) -> list[Timed]:
    """Every command, plus the failure and diagnostic paths, with ``config`` on stdin."""
    status_config = {**config, "cniVersion": "1.1.0", "recordStatus": True}
    status_config.pop("prevResult")
    runs = [run_proc(command, config, env=secret_env(command, f"{tag}-{command.lower()}"))
            for command in ("ADD", "CHECK", "DEL")]
    runs.append(run_proc("STATUS", status_config, env=secret_env("STATUS", f"{tag}-status")))
    runs.append(run_proc("GC", {**status_config, "cni.dev/valid-attachments": []}, env=secret_env("GC", f"{tag}-gc")))
    runs.append(run_proc("VERSION", config, env=secret_env("VERSION", f"{tag}-version")))
    runs.append(run_proc("ADD", {**config, "cniVersion": "9.9.9"}, env=secret_env("ADD", f"{tag}-badversion")))
    runs.append(run_proc("CHECK", {**config, "cniVersion": "0.3.1"}, env=secret_env("CHECK", f"{tag}-oldcheck")))
    unwritable = tmp_path / f"{tag}-dir"
    unwritable.mkdir()
    runs.append(run_proc("ADD", {**config, "logFile": str(unwritable), "failOnLogError": True},
                         env=secret_env("ADD", f"{tag}-strict")))
    runs.append(run_proc("ADD", {**config, "padding": "x" * 20000}, env=secret_env("ADD", f"{tag}-huge")))
    for run in runs:
        assert b"Traceback" not in run.stderr, run.stderr[-1000:]
    return runs


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_no_secret_reaches_file_or_stderr(tmp_path: Path, shape: str) -> None:
    log = tmp_path / "audit.log"
    config = SHAPES[shape](log)
    runs = invocations(config, tmp_path, shape)
    data = log.read_bytes()
    stderr = b"".join(run.stderr for run in runs)
    assert leaked(SECRETS, data, stderr) == []
    assert b"AKIAEXAMPLEKEYID0000" not in data + stderr and b"/root/.kube/config" not in data + stderr

    # The events are there, and the harmless context around the secrets survived.
    events = audit_log(log).events
    # In the file: all but VERSION (stderr only) and the strict run whose logFile is a directory.
    assert len(events) == 8, [e["cni"]["container_id"] for e in events]
    add = next(e for e in events if e["cni"]["container_id"] == f"{shape}-add")
    assert add["cni"]["args"]["K8S_AUTH_TOKEN"] == "[REDACTED]" and add["cni"]["args"]["K8S_POD_NAME"] == "web"
    assert add["related"]["ip"] == ["10.250.77.2"]
    assert b"[REDACTED]" in data
    if shape in ("calico", "linkerd"):
        assert add["cni"]["config"]["policy"]["type"] == "k8s"
    if shape == "pod-annotations":
        kept = add["cni"]["config"]["runtimeConfig"]["io.kubernetes.cri.pod-annotations"]
        assert set(kept) == {"vault.hashicorp.com/agent-inject-token",
                             "kubectl.kubernetes.io/last-applied-configuration", "example.com/db-url"}
        assert add["cni"]["config"]["runtimeConfig"]["portMappings"][0]["hostPort"] == 8080
    if shape == "urls-and-pem":
        assert "proxy.corp:3128" in add["cni"]["config"]["proxy"]


def test_environment_is_never_dumped(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    marker = "ENVIRONMENT-MARKER-5c1e9b"
    env = {**secret_env("ADD", "env"), "CNI_LOGGER_MARKER": marker, "PYTHONWARNINGS": "error",
           "PYTHONVERBOSE": "1", "PYTHONDEBUG": "1"}
    runs = [run_proc("ADD", net_config(log), env=env)]
    runs.append(run_proc("ADD", net_config(log, cniVersion="x"), env=env))
    runs.append(run_proc("ADD", stdin=b"{", env=env))
    runs.append(run_proc("ADD", net_config(log, logOptions={"maxSize": -1}), env=env))
    blobs = [run.stderr for run in runs] + [run.stdout for run in runs] + [log.read_bytes()]
    assert leaked([AWS_SECRET, ENV_PROXY_PASSWORD, marker, "AKIAEXAMPLEKEYID0000"], *blobs) == []
    assert runs[0].rc == 0 and runs[0].doc == {**PREV_RESULT, "cniVersion": "1.0.0"}


def test_inline_kubeconfig_under_a_neutral_key(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    config = net_config(log, clusterConfig=multus_kubeconfig())
    run = run_proc("ADD", config, env=secret_env("ADD", "inline"))
    assert run.rc == 0 and b"Traceback" not in run.stderr
    found = leaked([MULTUS_TOKEN, CLIENT_KEY_DATA[:40], CLIENT_CERT_DATA[:40]], log.read_bytes(), run.stderr)
    if found:
        raise KnownBug(f"leaked from an inline kubeconfig: {[s[:12] + '...' for s in found]}")


@pytest.mark.parametrize("setting", [
    {"logFile": f"https://cni:{PROXY_PASSWORD}@logs.example.com/cni.log"},
    {"redactKeys": SHORT_JWT},
    {"logOptions": {"maxSize": f"-----BEGIN PRIVATE KEY-----\n{PEM_KEY_BODY}\n-----END PRIVATE KEY-----"}},
])
def test_rejected_setting_values_are_masked_on_stderr(tmp_path: Path, setting: dict[str, Any]) -> None:
    log = tmp_path / "audit.log"
    run = run_proc("ADD", {**net_config(log), **setting}, env=secret_env("ADD", "setting"))
    assert run.rc == 0 and "logger setting ignored" in run.stderr.decode()
    [event] = run.stderr_events
    assert leaked(SECRETS, json.dumps(event).encode()) == []  # the event masks it ...
    assert leaked(SECRETS, log.read_bytes() if log.exists() else b"") == []
    found = leaked(SECRETS, run.stderr)
    if found:                                                 # ... the diagnostic line does not
        raise KnownBug(f"rejected setting echoed unmasked on stderr: {[s[:12] + '...' for s in found]}")
