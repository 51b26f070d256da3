"""The soak: the fault schedule of ``test_faults.py`` repeated on a growing stream for a chosen time, then one
verification of everything produced. Runs its own local stack in a temporary folder, stopped by PID.

    python -m tests.integration.soak --minutes 20 [--outage-seconds 60] [--kills-per-round 10] [--seed 1]

Prints a JSON report (kills survived, outages survived, events produced, rows expected and found,
duplicates) and exits 1 when anything was lost, duplicated or wrong.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import orjson

from devstack.local import stack_down, stack_up
from load.generate import StreamShape, generate_stream
from load.replay import rewrite
from tests.integration.faults import FaultRun
from tests.integration.harness import create_pipeline
from tests.integration.oracle import INVALID


def soak(minutes: float, outage_seconds: float, kills_per_round: int, seed: int, folder: Path) -> dict:
    stack_dir = folder / "stack"
    state = stack_up(stack_dir)
    try:
        pipeline = create_pipeline(stack_dir, state, folder, shared_clickhouse=True)
        front = pipeline.clickhouse_front
        assert front is not None
        rng = random.Random(seed)
        started = time.monotonic()
        run = FaultRun(
            pipeline, stack_dir, rng, say=lambda line: print(f"[{time.monotonic() - started:6.0f}s] {line}", flush=True)
        )
        rounds = 0
        try:
            while rounds == 0 or time.monotonic() - started < minutes * 60:
                shape = StreamShape(
                    traces=rng.randint(400, 900),
                    seed=rng.getrandbits(32),
                    invalid=0.01,
                    duplicates=0.02,
                    out_of_order=0.05,
                    media=0.02,
                )
                # Generated ids repeat between seeds: each round gets its own, or rounds would merge into each
                # other's entities (invalid messages stay byte for byte, the oracle knows them so).
                suffix = f"-r{rounds}"
                stream = [r if r.value in INVALID else rewrite(r, suffix) for r in generate_stream(shape)]
                run.schedule(stream, kills_per_round, outage_seconds, front)
                rounds += 1
                run.say(f"round {rounds} done, {len(run.produced)} events produced so far")
            result = run.verify()
        finally:
            run.stop_workers()
            front.stop()
        result["rounds"] = rounds
        result["minutes"] = round((time.monotonic() - started) / 60, 1)
        return result
    finally:
        stack_down(stack_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description="Fault-injection soak on a private local stack.")
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--outage-seconds", type=float, default=60)
    parser.add_argument("--kills-per-round", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lfpipe-soak-") as folder:
        result = soak(args.minutes, args.outage_seconds, args.kills_per_round, args.seed, Path(folder))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    healthy = (
        not result["row_mismatches"]
        and not result["archive_problems"]
        and result["duplicate_final_rows"] == 0
        and result["rows_found"] == result["rows_expected"]
        and result["dead_letters"] == result["dead_letters_expected"]
    )
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
