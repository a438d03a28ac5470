"""Graceful shutdown (SIGTERM) of a replica: what runs past ``--graceful-timeout`` is
handed over, not cancelled, and another replica ends it; a stream open at SIGTERM ends
with an ``error`` event (``server_shutting_down``) instead of being cut; nothing is
printed but the usual lines."""

from __future__ import annotations

import concurrent.futures
import functools
import signal
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.replicas.harness import LEASE, SLACK, SWEEP, cluster, job, sse_events, wait_until
from tests.wire_checks import check_emitted_stream

# uvicorn re-raises the signal once it has shut down: a clean exit shows as -SIGTERM.
STOPPED = (0, -signal.SIGTERM)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_sigterm_hands_running_responses_over_and_ends_open_streams(
    store: str, tmp_path: Path
) -> None:
    with (
        cluster(store, tmp_path, graceful=0.5) as pool,
        concurrent.futures.ThreadPoolExecutor(1) as threads,
    ):
        stopping, _other = pool.start(), pool.start()
        background = stopping.client.post(
            "/responses", json={"model": "m", "input": job("sd-bg", tool=60.0), "background": True}
        ).json()

        def streamed() -> list[dict[str, Any]]:
            body = {"model": "m", "input": job("sd-st", tool=60.0), "stream": True}
            with (
                httpx2.Client(base_url=stopping.url + "/v1", timeout=60) as client,
                client.stream("POST", "/responses", json=body) as reply,
            ):
                return list(sse_events(reply.iter_lines()))

        stream = threads.submit(streamed)
        for ref in ("sd-bg", "sd-st"):
            wait_until(functools.partial(pool.marked, f"start {ref}"), what=f"{ref}'s tool")

        assert stopping.terminate() in STOPPED
        events = stream.result(60)

        check_emitted_stream(events, ended_with_done=True)
        assert events[-1]["type"] == "error"
        assert events[-1]["code"] == "server_shutting_down"
        assert "Traceback" not in stopping.stderr
        assert "CancelledError" not in stopping.stderr
        streamed_id = events[0]["response"]["id"]
        for response_id, ref in ((background["id"], "sd-bg"), (streamed_id, "sd-st")):
            ended = pool.wait_terminal(response_id, within=LEASE + SWEEP + SLACK)
            # Handed over, not cancelled: the other replica ended it. The tool it had in
            # flight was stopped by the shutdown and may not run again.
            assert ended["status"] == "failed", ended
            assert ended["error"]["type"] == "step_abandoned"
            assert pool.effects_of(ref) == 1
            assert pool.marked(f"cancelled {ref}")
