"""Running a gateway in tests: a real ``lfpipe gateway`` process on a pipeline's topics, a key for it, the real
client SDKs in their own virtualenvs (``scripts/sdk-envs.sh``), and plain HTTP for the contract's corners."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.net import free_port
from tests.integration.harness import PipelineEnv

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).with_name("clients")
SDK_ENVS = Path(os.environ.get("LFPIPE_SDK_ENVS", Path.home() / ".cache" / "lfpipe" / "sdk-envs"))


def sdk_python(name: str) -> Path:
    """The interpreter of a client virtualenv, made by ``scripts/sdk-envs.sh`` when missing (cached after)."""
    python = SDK_ENVS / name / "bin" / "python"
    if not (SDK_ENVS / name / ".pins").exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "sdk-envs.sh")], check=True, timeout=900)
    return python


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class GatewayEnv:
    pipeline: PipelineEnv
    project: str
    public_key: str
    secret_key: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def authorization(self) -> str:
        return "Basic " + base64.b64encode(f"{self.public_key}:{self.secret_key}".encode()).decode()

    def start(self, workers: int = 1) -> None:
        self.port = self.port or free_port()
        log = open(self.pipeline.workdir / f"gateway-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - the process owns it
        command = [sys.executable, "-m", "pipeline.cli", "gateway", "--port", str(self.port), "--workers", str(workers)]
        self.process = subprocess.Popen(command, env=self.pipeline.env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.logs()
            try:
                if self.request("GET", "/api/public/ready", auth=False).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the gateway did not become ready:\n{self.logs()}")

    def stop(self) -> int:
        """SIGTERM: the gateway finishes what is in flight and exits; returns its exit code."""
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(60)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.pipeline.workdir.glob("gateway-*.log"))
        )

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Answer:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if auth:
            all_headers.setdefault("Authorization", self.authorization)
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Answer(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read(), dict(error.headers))

    def post_json(self, path: str, document: Any, **kwargs: Any) -> Answer:
        return self.request("POST", path, orjson.dumps(document), **kwargs)

    def run_client(self, env: str, script: str, extra: dict[str, str] | None = None, timeout: float = 180) -> Any:
        """Run ``clients/<script>`` in SDK virtualenv ``env`` pointed at this gateway; its JSON output."""
        client_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", ""),
            "LANGFUSE_HOST": self.url,
            "LANGFUSE_BASE_URL": self.url,
            "LANGFUSE_PUBLIC_KEY": self.public_key,
            "LANGFUSE_SECRET_KEY": self.secret_key,
            "OTEL_SDK_DISABLED": "false",
            **(extra or {}),
        }
        result = subprocess.run(
            [str(sdk_python(env)), str(CLIENTS / script)],
            env=client_env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"{script} failed:\n{result.stderr.decode()[-4000:]}\n{self.logs()}")
        return orjson.loads(result.stdout)


def start_gateway(pipeline: PipelineEnv, project: str = "gw-project", workers: int = 1) -> GatewayEnv:
    """A gateway for ``pipeline`` with an imported key pair (as a Dify configuration would carry over)."""
    public_key, secret_key = f"pk-lf-{pipeline.prefix}test", f"sk-lf-{pipeline.prefix}secret"
    pipeline.cli("keys", "create", "--project", project, "--public-key", public_key, "--secret-key", secret_key)
    gateway = GatewayEnv(pipeline, project, public_key, secret_key)
    gateway.start(workers)
    return gateway
