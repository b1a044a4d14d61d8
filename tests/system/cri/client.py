"""A minimal CRI client: the RuntimeService calls kubelet makes to run one pod sandbox, over a unix socket.

The protobuf classes come from ``cri_minimal.proto`` (next to this file), compiled with grpcio-tools into a
directory the caller gives (a temporary one), so no generated code lives in the repository. kubelet speaks
to containerd exactly like this: gRPC over ``unix://<socket>``, service ``runtime.v1.RuntimeService``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

PROTO = Path(__file__).with_name("cri_minimal.proto")
RPC_TIMEOUT = 60.0
"""Seconds for one CRI call (RunPodSandbox mounts the image and runs the CNI chain: ~1 s here)."""


class GeneratedCode:
    """The compiled ``cri_minimal_pb2`` (messages) and ``cri_minimal_pb2_grpc`` (stub) modules."""

    def __init__(self, pb2: ModuleType, pb2_grpc: ModuleType) -> None:
        self.pb2 = pb2
        self.pb2_grpc = pb2_grpc


def compile_proto(out_dir: Path) -> GeneratedCode:
    """Compile the minimal proto into ``out_dir`` and import it (protoc's own errors fail loudly)."""
    from grpc_tools import protoc  # type: ignore[import-untyped, unused-ignore]

    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc", f"-I{PROTO.parent}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
            str(PROTO)]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"protoc failed (rc={rc}) on {PROTO}")
    # The generated _grpc module does ``import cri_minimal_pb2``: register the messages module under that
    # name first (sys.modules), so nothing is added to sys.path.
    pb2 = _load("cri_minimal_pb2", out_dir / "cri_minimal_pb2.py")
    pb2_grpc = _load("cri_minimal_pb2_grpc", out_dir / "cri_minimal_pb2_grpc.py")
    return GeneratedCode(pb2, pb2_grpc)


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class CriClient:
    """RuntimeService over ``unix://socket``; every call is bounded by :data:`RPC_TIMEOUT`."""

    def __init__(self, code: GeneratedCode, socket: Path) -> None:
        import grpc

        self.pb2 = code.pb2
        self._channel = grpc.insecure_channel(f"unix://{socket}")
        self._stub = code.pb2_grpc.RuntimeServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def version(self) -> Any:
        return self._stub.Version(self.pb2.VersionRequest(version="v1"), timeout=RPC_TIMEOUT)

    def status(self) -> Any:
        """The runtime's conditions, with ``info`` (verbose): containerd puts its loaded CNI config there."""
        return self._stub.Status(self.pb2.StatusRequest(verbose=True), timeout=RPC_TIMEOUT)

    def run_pod_sandbox(self, config: Any) -> str:
        response = self._stub.RunPodSandbox(self.pb2.RunPodSandboxRequest(config=config), timeout=RPC_TIMEOUT)
        return str(response.pod_sandbox_id)

    def pod_sandbox_status(self, sandbox_id: str) -> Any:
        request = self.pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True)
        return self._stub.PodSandboxStatus(request, timeout=RPC_TIMEOUT)

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self._stub.StopPodSandbox(self.pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=RPC_TIMEOUT)

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self._stub.RemovePodSandbox(self.pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id),
                                    timeout=RPC_TIMEOUT)
