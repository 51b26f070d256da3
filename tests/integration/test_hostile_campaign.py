"""The hostile-input campaign in CI: a few thousand hostile messages (``load/hostile.py``) among valid
neighbours, through a real worker, restarted once. ``python -m tests.integration.hostile`` runs the long one."""

from __future__ import annotations

import pytest

from tests.integration.harness import PipelineEnv
from tests.integration.hostile import STALL_SECONDS, campaign, healthy

pytestmark = pytest.mark.integration


def test_hostile_messages_never_crash_stall_or_vanish(pipeline_env: PipelineEnv):
    report = campaign(pipeline_env, messages=2500, neighbour_traces=60, seed=7, say=print)
    print(report)
    assert report["worker_exit_codes"] == [0, 0], pipeline_env.worker_logs()
    assert report["longest_without_progress_seconds"] < STALL_SECONDS
    assert report["silent_drops"] == 0 and report["both_stored_and_dead_lettered"] == 0
    assert report["letters_without_reason"] == 0 and report["unknown_reason_kinds"] == []
    assert report["neighbour_mismatches"] == []
    # The campaign must reach both outcomes in volume, or it tests nothing.
    assert report["stored"] > 500 and sum(report["dead_letters"].values()) > 1000
    assert healthy(report)
