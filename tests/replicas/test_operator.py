"""The reproduction of issue 16, as an operator meets it: one ``serve`` is SIGKILLed while
the slow booking tool runs for a background, a foreground and a streamed response, and is
restarted on the same store. Before the fix all three stayed ``in_progress`` for good."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.replicas.harness import LEASE, SLACK, SWEEP, cluster, job, sse_events, wait_until
from tests.wire_checks import check_emitted_event


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_killed_server_restarted_on_its_store_ends_all_three_responses(
    store: str, tmp_path: Path
) -> None:
    with cluster(store, tmp_path) as pool, concurrent.futures.ThreadPoolExecutor(2) as threads:
        server = pool.start()
        slow = {"tool": 60.0}
        background = server.client.post(
            "/responses", json={"model": "m", "input": job("op-bg", **slow), "background": True}
        ).json()

        def foreground() -> None:
            with (
                httpx2.Client(base_url=server.url + "/v1", timeout=120) as client,
                contextlib.suppress(httpx2.TransportError),  # killed under it
            ):
                client.post("/responses", json={"model": "m", "input": job("op-fg", **slow)})

        def streamed() -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            with httpx2.Client(base_url=server.url + "/v1", timeout=120) as client:
                body = {"model": "m", "input": job("op-st", **slow), "stream": True}
                with (
                    contextlib.suppress(httpx2.TransportError),
                    client.stream("POST", "/responses", json=body) as reply,
                ):
                    for event in sse_events(reply.iter_lines()):
                        check_emitted_event(event)
                        seen.append(event)
            return seen

        posted, stream = threads.submit(foreground), threads.submit(streamed)
        for ref in ("op-bg", "op-fg", "op-st"):
            wait_until(functools.partial(pool.marked, f"start {ref}"), what=f"{ref}'s tool")
        server.kill()
        seen = stream.result(60)
        posted.result(60)
        ids = [background["id"], pool.store.ids_for("op-fg")[0], seen[0]["response"]["id"]]

        pool.start()  # the same store, a new process
        for response_id, ref in zip(ids, ("op-bg", "op-fg", "op-st"), strict=True):
            ended = pool.wait_terminal(response_id, within=LEASE + SWEEP + SLACK)
            # The tool was in flight and may not run again: failed, as abandoned.
            assert ended["status"] == "failed", ended
            assert ended["error"]["type"] == "step_abandoned"
            assert pool.effects_of(ref) == 1
