"""Process helpers shared by the local servers: ports, spawning, stopping, state."""

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.net import LOOPBACK


class ServerError(RuntimeError):
    """A local server failed to start or to stop."""


def port_free(port: int) -> bool:
    """Whether a server could listen on `port` on the loopback interface now."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As servers do, so connections in TIME_WAIT (after a restart) don't count.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LOOPBACK, port))
    except OSError:
        return False
    return True


def require_free(*ports: int, timeout: float = 5.0) -> None:
    """Wait until the distinct `ports` are free; ServerError after `timeout`.

    Without this, a readiness check could be answered by whatever already
    listens there while the new server dies on its bind. The wait covers a
    server just stopped: its port can stay taken for some milliseconds.
    """
    if len(set(ports)) != len(ports):
        raise ServerError(f"a server needs distinct ports, got {ports}")
    wait_until(
        lambda: all(port_free(port) for port in ports),
        f"loopback port(s) {list(ports)} to be free",
        timeout,
    )


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def log_tail(log_path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that it is missing."""
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log file at {log_path})"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    ready: Callable[[], bool],
    what: str,
    timeout: float,
    pid: int | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll `ready` until it returns True.

    Raises ServerError, with the tail of `log_path`, when `pid` exits first or
    the timeout passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        # Check the process first: a dead server must not wait out the timeout.
        if pid is not None and not pid_alive(pid):
            problem = f"process {pid} exited while waiting for {what}"
            break
        if ready():
            return
        if time.monotonic() >= deadline:
            problem = f"timed out after {timeout:g}s waiting for {what}"
            break
        time.sleep(0.2)
    if log_path is not None:
        problem += f"\n--- last lines of {log_path} ---\n{log_tail(log_path)}"
    raise ServerError(problem)


def wait_for_port(
    host: str,
    port: int,
    timeout: float,
    pid: int | None = None,
    log_path: Path | None = None,
) -> None:
    """Wait until host:port accepts TCP connections (see `wait_until`)."""
    wait_until(lambda: port_open(host, port), f"{host}:{port}", timeout, pid, log_path)


def spawn(cmd: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> int:
    """Start `cmd` detached in its own session, output appended to `log_path`.

    Returns the pid. posix_spawn rather than subprocess.Popen: a Popen object
    dropped while its process runs raises a ResourceWarning, and the servers
    must outlive this call (and, for the dev stack, this Python process).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawnp(
        cmd[0],
        list(cmd),
        os.environ if env is None else env,
        file_actions=file_actions,
        setsid=True,  # own session: no terminal signals (Ctrl+C) from the caller
    )


def pid_alive(pid: int) -> bool:
    """Whether process `pid` still runs; reaps it if it is our exited child."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child, or already reaped
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie whose parent has not reaped it yet still answers kill(pid, 0).
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def stop_pid(pid: int, timeout: float = 15) -> None:
    """SIGTERM `pid`, wait up to `timeout` seconds, then SIGKILL it.

    Tolerates a process that is already gone; works for non-children too.
    """
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):  # already gone: fine
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.1)
    raise ServerError(f"process {pid} survived SIGKILL")


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write `state` as JSON, atomically so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def read_state(path: Path) -> dict[str, Any] | None:
    """The JSON state written by `write_state`, or None if there is none."""
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return state
