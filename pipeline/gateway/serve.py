"""Running gateways: one process, or several on one port (``SO_REUSEPORT``: the kernel spreads connections).

A gateway keeps no state between requests, so processes (and machines) scale it; a supervisor starts the
processes, restarts one that dies, and forwards SIGTERM, on which each process stops accepting, finishes its
requests in flight (``/api/public/ready`` answers 500 meanwhile) and exits. With several processes each one
starts listening only once it has read the API keys and reached Kafka (or after ``READY_WAIT_SECONDS``), so the
kernel never hands a connection to a process that would answer 503 while its siblings could serve it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

import uvloop
from aiohttp import web

from pipeline.config import Settings
from pipeline.runtime.memory import tune_gc

if TYPE_CHECKING:
    from pipeline.gateway.app import Gateway

log = logging.getLogger("lfpipe.gateway")
SHUTDOWN_SECONDS = 10.0
READY_WAIT_SECONDS = 30.0


def serve(settings: Settings, workers: int) -> None:
    _configure_logging(settings)
    if workers <= 1:
        uvloop.run(_serve_one(settings, reuse_port=False))
        return
    # Keep the port reserved (bound, never listening) while the processes bind it too.
    with socket.socket() as reservation:
        reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reservation.bind((settings.gateway_bind, settings.gateway_port))
        port = reservation.getsockname()[1]
        settings = settings.model_copy(update={"gateway_port": port})
        metrics_dir = tempfile.mkdtemp(prefix="lfpipe-gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the spawned processes
        try:
            _supervise(settings, workers)
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(settings: Settings, workers: int) -> None:
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, _: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    processes: list[BaseProcess] = []
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        processes.append(context.Process(target=_process_main, args=(settings,), daemon=False))
        processes[-1].start()
    while not stopping:
        for index, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                log.error("gateway process %s exited with %s; starting another", process.pid, process.exitcode)
                processes[index] = context.Process(target=_process_main, args=(settings,), daemon=False)
                processes[index].start()
        time.sleep(0.5)
    for process in processes:
        process.join(SHUTDOWN_SECONDS + 20)


def _configure_logging(settings: Settings) -> None:
    level = settings.gateway_loglevel.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def _process_main(settings: Settings) -> None:
    _configure_logging(settings)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor forwards SIGTERM
    uvloop.run(_serve_one(settings, reuse_port=True))


async def _serve_one(settings: Settings, reuse_port: bool) -> None:
    from pipeline.endpoints import resolve
    from pipeline.gateway.app import Gateway, make_app

    gateway = Gateway(settings, resolve(settings))
    runner = web.AppRunner(make_app(gateway), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    tune_gc()  # requests make many short-lived containers and no cycles
    if reuse_port:  # the kernel hands connections to any listening process: listen once this one can serve
        await _until_ready(gateway)
    site = web.TCPSite(runner, settings.gateway_bind, settings.gateway_port, reuse_port=reuse_port, backlog=2048)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    address = runner.addresses[0]
    print(f"lfpipe gateway listening on http://{address[0]}:{address[1]} (pid {os.getpid()})", flush=True)
    await stop.wait()
    gateway.stopping = True
    await runner.cleanup()


async def _until_ready(gateway: Gateway) -> None:
    """Wait (at most ``READY_WAIT_SECONDS``) for keys and Kafka; after that listen anyway and answer 503s."""
    deadline = time.monotonic() + READY_WAIT_SECONDS
    while gateway.problems() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
