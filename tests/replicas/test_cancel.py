"""A cancel sent to one replica stops a response another replica runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.replicas.harness import CANCEL_POLL, SLACK, cluster, job, wait_until
from tests.wire_checks import check_emitted_response


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_cancel_on_another_replica_stops_the_running_tool(store: str, tmp_path: Path) -> None:
    with cluster(store, tmp_path) as pool:
        running, other = pool.start(), pool.start()
        body = {"model": "m", "input": job("cx", tool=60.0), "background": True}
        response_id = running.client.post("/responses", json=body).json()["id"]
        wait_until(lambda: pool.marked("start cx"), what="the tool runs")

        asked = time.monotonic()
        cancelled = other.client.post(f"/responses/{response_id}/cancel")
        took = time.monotonic() - asked

        assert cancelled.status_code == 200, cancelled.text
        assert check_emitted_response(cancelled.json()).status == "cancelled"
        # The replica running it saw the cancel through the store and stopped the tool.
        assert pool.marked("cancelled cx")
        assert took < CANCEL_POLL + SLACK
        for replica in (running, other):
            again = replica.client.get(f"/responses/{response_id}").json()
            assert check_emitted_response(again).status == "cancelled"
        assert pool.effects_of("cx") == 1
