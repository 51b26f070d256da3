"""The local stack as one unit: Kafka and SeaweedFS under the stack folder, recorded in ``stack.json``.

Ports are kept in the state file so that ``dev up`` after ``dev down`` reuses them: the broker's data then
stays valid and clients configured earlier still reach it.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from devstack.kafka import ensure_kafka_jars, start_kafka, stop_kafka
from devstack.processes import pid_alive, read_state, stop_pid, write_state
from devstack.seaweedfs import start_seaweedfs

ARCHIVE_BUCKET = "lfpipe"


def stack_up(stack_dir: Path, with_s3: bool = True) -> dict[str, Any]:
    """Start what is not running yet; returns the state (also written to ``stack.json``)."""
    stack_dir = stack_dir.resolve()
    state_file = stack_dir / "stack.json"
    state = read_state(state_file) or {}
    kafka = state.get("kafka")
    if not kafka or not pid_alive(kafka["pid"]):
        jars = ensure_kafka_jars()
        process = start_kafka(
            stack_dir / "kafka", jars, (kafka or {}).get("port"), (kafka or {}).get("controller_port")
        )
        state["kafka"] = {
            "pid": process.pid,
            "bootstrap": process.bootstrap,
            "port": process.port,
            "controller_port": process.controller_port,
            "log": str(process.log_path),
        }
        write_state(state_file, state)
    s3 = state.get("s3")
    if with_s3 and (not s3 or not pid_alive(s3["pid"])):
        access_key = (s3 or {}).get("access_key") or "lfpipe"
        secret_key = (s3 or {}).get("secret_key") or secrets.token_hex(16)
        seaweed = start_seaweedfs(stack_dir / "seaweedfs", access_key, secret_key, (s3 or {}).get("port"))
        state["s3"] = {
            "pid": seaweed.pid,
            "endpoint": seaweed.s3_endpoint,
            "port": seaweed.s3_port,
            "access_key": access_key,
            "secret_key": secret_key,
            "bucket": ARCHIVE_BUCKET,
            "log": str(seaweed.log_path),
        }
        write_state(state_file, state)
    return state


def stack_down(stack_dir: Path) -> list[str]:
    """Stop every server the state file names, by PID; returns what was stopped."""
    state_file = stack_dir.resolve() / "stack.json"
    state = read_state(state_file) or {}
    stopped = []
    for name in ("s3", "kafka"):
        entry = state.get(name)
        if entry and pid_alive(entry["pid"]) and _started_here(entry["pid"], stack_dir.resolve()):
            stop_pid(entry["pid"], 30)
            stopped.append(f"{name} (pid {entry['pid']})")
    write_state(state_file, {name: {**entry, "pid": 0} for name, entry in state.items()})
    return stopped


def _started_here(pid: int, stack_dir: Path) -> bool:
    """Guard against a recycled PID: the process must be a server of this stack (its command names the dir)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return str(stack_dir) in command


def stack_status(stack_dir: Path) -> dict[str, dict[str, Any]]:
    state = read_state(stack_dir.resolve() / "stack.json") or {}
    return {
        name: {**entry, "running": bool(entry.get("pid")) and pid_alive(entry["pid"])} for name, entry in state.items()
    }


__all__ = ["stack_down", "stack_status", "stack_up", "stop_kafka"]
