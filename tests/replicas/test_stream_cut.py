"""A background stream cut by a SIGKILL resumes on another replica where it was cut: the
events a live reader had are in the event log (it is written before each step's wait)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.replicas.harness import cluster, job, read_stream, sse_events, wait_until
from tests.wire_checks import check_emitted_event


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_stream_cut_by_a_kill_resumes_on_another_replica_where_it_was_cut(
    store: str, tmp_path: Path
) -> None:
    with cluster(store, tmp_path) as pool:
        running, other = pool.start(), pool.start()
        body = {"model": "m", "input": job("sk", second=60.0), "background": True, "stream": True}
        seen: list[dict[str, Any]] = []
        with (
            httpx2.Client(base_url=running.url + "/v1", timeout=60) as client,
            client.stream("POST", "/responses", json=body) as reply,
        ):
            for event in sse_events(reply.iter_lines()):
                seen.append(event)
                if event["type"] == "response.output_item.done":
                    break  # the tool's item is done; the next model call waits
            wait_until(lambda: len(pool.upstream.received) == 2, what="the 2nd model call")
            running.kill()
        response_id = seen[0]["response"]["id"]
        for event in seen:
            check_emitted_event(event)

        # What the client saw before the cut is what any replica has for those numbers,
        # and its stream goes on from there to the end the other replica gave it.
        rest = read_stream(other, response_id, seen[-1]["sequence_number"])
        whole = read_stream(other, response_id)
        assert whole[: len(seen)] == seen
        assert whole[len(seen) :] == rest
        assert rest[-1]["type"] == "response.failed"
        assert pool.effects_of("sk") == 1
