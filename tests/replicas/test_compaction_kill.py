"""A compaction step survives its replica being SIGKILLed mid-summary: a background
response with ``context_management`` books ``ref``, then compacts; the upstream holds that
first summary call until the replica dies, another replica's sweep takes the response over
and re-sends the compaction call (a summary has no side effect, so it is re-fired, unlike a
tool or an ordinary model call in flight), and the response ends with one compaction item
and the answer after it."""

from __future__ import annotations

import math
import threading
import uuid
from pathlib import Path

import attrs
import pytest

from responseloop.core import DEFAULT_COMPACTION_PROMPT, SUMMARY_PREFIX
from responseloop.testing import ChatReply
from tests.loopback_upstream import Received
from tests.replicas.harness import (
    LEASE,
    SLACK,
    SWEEP,
    Cluster,
    _job_of,
    cluster,
    final_text,
    job,
    read_stream,
    scripted_model,
    wait_until,
)


class HoldingFirstSummary:
    """The replicas' scripted model, which also summarises: the first compaction call of
    each ref is held (until its replica goes away), later ones are answered at once; a call
    that carries a summary answers as the job's last call does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._summaries: dict[str, int] = {}

    def __call__(self, received: Received) -> ChatReply:
        messages = received.json().get("messages", [])
        ref = str(_job_of(messages)["ref"])
        if messages[-1].get("content") == DEFAULT_COMPACTION_PROMPT:
            with self._lock:
                seen = self._summaries.get(ref, 0)
                self._summaries[ref] = seen + 1
            summary = ChatReply.text(f"{ref} was booked.")
            return attrs.evolve(summary, delay=math.inf) if seen == 0 else summary
        if any(str(m.get("content", "")).startswith(SUMMARY_PREFIX) for m in messages):
            return ChatReply.text(final_text(ref))
        return scripted_model(received)


def _summary_calls(pool: Cluster, ref: str) -> int:
    return sum(
        ref in received.body.decode()
        and received.json()["messages"][-1].get("content") == DEFAULT_COMPACTION_PROMPT
        for received in pool.upstream.received
    )


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_compaction_cut_by_a_kill_is_re_fired_by_another_replica(
    store: str, tmp_path: Path
) -> None:
    with cluster(store, tmp_path) as pool:
        pool.upstream.responder = HoldingFirstSummary()
        running, survivor = pool.start(), pool.start()
        ref = f"c{uuid.uuid4().hex[:10]}"
        body = {
            "model": "m",
            "input": job(ref),
            "background": True,
            "context_management": [{"type": "compaction", "compact_threshold": 1}],
        }
        reply = running.client.post("/responses", json=body)
        assert reply.status_code == 200, reply.text
        response_id = reply.json()["id"]
        wait_until(lambda: _summary_calls(pool, ref) == 1, what="the summary call")
        running.kill()

        ended = pool.wait_terminal(response_id, within=LEASE + SWEEP + SLACK)
        assert ended["status"] == "completed", ended
        assert [item["type"] for item in ended["output"]] == ["mcp_call", "compaction", "message"]
        assert ended["output"][-1]["content"][0]["text"] == final_text(ref)
        assert _summary_calls(pool, ref) == 2  # the cut call, sent again by the survivor
        assert pool.effects_of(ref) == 1  # the tool before it was not run again
        # The call after the compaction had the user's job and the summary, nothing else.
        summary = SUMMARY_PREFIX + f"{ref} was booked."
        (after,) = [
            r.json()["messages"]
            for r in pool.upstream.received
            if summary in [m.get("content") for m in r.json()["messages"]]
        ]
        assert [m["role"] for m in after] == ["user", "user"]
        # Its stream, replayed from the event log, is whole and passes the wire checks.
        events = read_stream(survivor, response_id)
        done = [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"]
        assert done.count("compaction") == 1
        assert events[-1]["type"] == "response.completed"
