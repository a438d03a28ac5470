"""A background response's stream resumed on another replica
(``GET /v1/responses/{id}?stream=true&starting_after=N``) is the original's, from N on:
the same events with the same sequence numbers, while the response runs and after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.replicas.harness import cluster, job, read_stream, sse_events
from tests.wire_checks import check_emitted_stream


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_stream_resumed_on_another_replica_equals_the_original(
    store: str, tmp_path: Path
) -> None:
    with cluster(store, tmp_path) as pool:
        running, other, third = pool.start(), pool.start(), pool.start()
        body = {
            "model": "m",
            "input": job("sx", tool=1.0, second=0.3),
            "background": True,
            "stream": True,
        }
        original: list[dict[str, Any]] = []
        resumed_while_running: list[dict[str, Any]] = []
        with running.client.stream("POST", "/responses", json=body) as reply:
            for event in sse_events(reply.iter_lines()):
                original.append(event)
                if event["type"] == "response.mcp_call.in_progress":
                    # The tool runs on the first replica: follow it from the second.
                    after = original[1]["sequence_number"]
                    response_id = original[0]["response"]["id"]
                    resumed_while_running = read_stream(other, response_id, after)
        check_emitted_stream(original, ended_with_done=True)
        assert original[-1]["type"] == "response.completed"

        assert resumed_while_running == original[2:]
        for after in (0, len(original) // 2, len(original) - 2):
            assert read_stream(third, response_id, after) == original[after + 1 :]
        assert read_stream(other, response_id) == original
