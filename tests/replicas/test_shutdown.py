"""Graceful shutdown (SIGTERM) of a replica: what runs past ``--graceful-timeout`` is
handed over, not cancelled, and another replica ends it; a stream open at SIGTERM ends
with an ``error`` event (``server_shutting_down``) instead of being cut; nothing is
printed but the usual lines."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.replicas.harness import SLACK, cluster, job, wait_until

# uvicorn re-raises the signal once it has shut down: a clean exit shows as -SIGTERM.
STOPPED = (0, -signal.SIGTERM)


@pytest.mark.parametrize("store", ["sqlite"])
def test_sigterm_lets_a_response_finish_within_the_graceful_timeout(
    store: str, tmp_path: Path
) -> None:
    with cluster(store, tmp_path, graceful=20.0) as pool:
        stopping = pool.start()
        body = {"model": "m", "input": job("sd-ok", tool=1.0), "background": True}
        response_id = stopping.client.post("/responses", json=body).json()["id"]
        wait_until(lambda: pool.marked("start sd-ok"), what="the tool runs")
        assert stopping.terminate() in STOPPED
        assert "Traceback" not in stopping.stderr

        pool.start()
        ended = pool.wait_terminal(response_id, within=SLACK)
        assert ended["status"] == "completed"
        assert pool.effects_of("sd-ok") == 1
