"""SIGKILL a replica at a point hypothesis picks, while it runs a response, and check what
the surviving replicas make of it: the response ends (within lease + sweep, and slack),
the booking tool never ran twice, and a completed response says what it booked."""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.replicas.harness import (
    LEASE,
    SLACK,
    SWEEP,
    Cluster,
    Replica,
    cluster,
    final_text,
    job,
    sse_events,
    wait_until,
)
from tests.wire_checks import check_emitted_event

# Where the replica running the response dies.
POINTS = {
    # just after the request was taken: the first model call may not have started
    "before_model_call": {},
    # while the first model call waits for the upstream
    "during_model_call": {"first": 60.0},
    # while the non-idempotent tool runs
    "during_tool": {"tool": 60.0},
    # the tool has just returned: its step may or may not be stored as completed
    "between_steps": {"tool": 0.05, "second": 1.0},
    # while the model call after the tool waits for the upstream
    "during_second_model_call": {"second": 60.0},
    # once the response has ended
    "after_the_response": {},
}
MODES = ("background", "foreground", "stream")


def _upstream_calls(pool: Cluster, ref: str) -> int:
    return sum(ref in received.body.decode() for received in pool.upstream.received)


def _kill_point_reached(pool: Cluster, point: str, ref: str) -> bool:
    if point == "during_model_call":
        return _upstream_calls(pool, ref) >= 1
    if point == "during_tool":
        return pool.marked(f"start {ref}")
    if point == "between_steps":
        return pool.marked(f"end {ref}")
    if point == "during_second_model_call":
        return _upstream_calls(pool, ref) >= 2
    return True


def _start(
    pool: Cluster, replica: Replica, mode: str, body: dict[str, Any]
) -> Generator[str, None, None]:
    """Start the response on ``replica``; yields its id (once known), then keeps the
    request open (foreground) until the generator is closed."""
    if mode == "background":
        reply = replica.client.post("/responses", json={**body, "background": True})
        assert reply.status_code == 200, reply.text
        yield reply.json()["id"]
        return
    if mode == "stream":
        with (
            httpx2.Client(base_url=replica.url + "/v1", timeout=120) as client,
            client.stream("POST", "/responses", json={**body, "stream": True}) as reply,
        ):
            events = sse_events(reply.iter_lines())  # kept: dropping it closes the stream
            first = next(events)
            check_emitted_event(first)
            assert first["type"] == "response.created"
            yield first["response"]["id"]
        return
    ref = body["metadata"]["ref"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool_thread:

        def post() -> None:
            with (
                httpx2.Client(base_url=replica.url + "/v1", timeout=120) as client,
                contextlib.suppress(httpx2.TransportError),  # its replica was killed
            ):
                client.post("/responses", json=body)

        pending = pool_thread.submit(post)
        wait_until(lambda: bool(pool.store.ids_for(ref)), what="the response is stored")
        yield pool.store.ids_for(ref)[0]
        if mode == "foreground":
            pending.result(120)


def _one_kill(pool: Cluster, point: str, mode: str, which: int) -> None:
    ref = f"b{uuid.uuid4().hex[:10]}"
    body = {
        "model": "m",
        "input": job(ref, **POINTS[point]),
        "metadata": {"ref": ref},
        "store": True,
    }
    replica = pool.alive[which % len(pool.alive)]
    if point == "after_the_response":
        mode = "background"
    started = _start(pool, replica, mode, body)
    response_id = next(started)
    if point == "after_the_response":
        pool.wait_terminal(response_id, within=SLACK)
    else:
        wait_until(lambda: _kill_point_reached(pool, point, ref), what=point)
    replica.kill()
    started.close()
    pool.start()  # keep the pool's size for the next example

    ended = pool.wait_terminal(response_id, within=LEASE + SWEEP + SLACK)

    booked = pool.effects_of(ref)
    assert booked <= 1, f"{ref} was booked {booked} times"
    if ended["status"] == "completed":
        assert booked == 1
        assert ended["output"][-1]["content"][0]["text"] == final_text(ref)
    else:
        # What a replica may not re-run (a call in flight when its replica died) fails it.
        assert ended["status"] == "failed", ended
        assert ended["error"].get("type") == "step_abandoned", ended["error"]
    if point == "during_tool" or point == "during_second_model_call":
        assert (ended["status"], booked) == ("failed", 1)
    if point == "during_model_call":
        assert (ended["status"], booked) == ("failed", 0)
    if point == "after_the_response":
        assert (ended["status"], booked) == ("completed", 1)


@pytest.mark.parametrize(("store", "replicas"), [("sqlite", 2), ("postgres", 3)])
def test_a_killed_replicas_responses_are_ended_by_the_others(
    store: str, replicas: int, tmp_path: Path
) -> None:
    with cluster(store, tmp_path) as pool:
        for _ in range(replicas):
            pool.start()
        seen = itertools.count()

        @settings(
            max_examples=5,
            deadline=None,
            database=None,
            phases=(Phase.explicit, Phase.generate),  # each example costs seconds
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(
            point=st.sampled_from(sorted(POINTS)),
            mode=st.sampled_from(MODES),
            which=st.integers(0, replicas - 1),
        )
        def killed(point: str, mode: str, which: int) -> None:
            next(seen)
            _one_kill(pool, point, mode, which)

        killed()
        assert next(seen) >= 5
