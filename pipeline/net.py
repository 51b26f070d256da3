"""Loopback ports: where lfpipe's own servers listen unless an operator binds elsewhere."""

import contextlib
import socket

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that are free on the loopback interface now."""
    # All sockets stay bound until every port is picked, so none repeats.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def free_port() -> int:
    """A TCP port that is free on the loopback interface right now."""
    return free_ports(1)[0]
