"""The worker's log level holds: Faust's start-up spinner would set the root logger to DEBUG at WARNING and above,
making every library's debug call build a log record. Run in a child process: Faust's logging set-up replaces
the root handlers and redirects stdout."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import logging, os, faust
from pipeline.runtime.app import faust_worker
answer = os.fdopen(os.dup(1), "w")  # Faust redirects sys.stdout into its log
app = faust.App("probe")
worker = faust_worker(app, "{level}") if {ours} else faust.Worker(app, loglevel="{level}", quiet=True)
worker._setup_logging()
answer.write(str(logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)))
"""


def debug_enabled(level: str, ours: bool) -> bool:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(level=level, ours=ours)], capture_output=True, check=True, timeout=120
    )
    return result.stdout.decode().strip().endswith("True")


def test_faust_alone_turns_debug_on_at_warning():
    assert debug_enabled("warning", ours=False)  # the reason for faust_worker; if Faust changes, drop the patch


def test_the_worker_keeps_debug_off_at_warning_and_info():
    assert not debug_enabled("warning", ours=True)
    assert not debug_enabled("info", ours=True)
