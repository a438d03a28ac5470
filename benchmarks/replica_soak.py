"""Replica soak: N ``responseloop serve`` replicas on one store under load, with replicas
SIGKILLed at random and restarted, for a few minutes.

Clients submit background, foreground and streamed responses to random replicas; each
books a unique ref with the non-idempotent tool of the replica tests
(``tests/replicas/replica_tools.py``), with random model and tool delays. Every few
seconds a random replica is SIGKILLed and a new one started on the same store. Each
client then polls any live replica until its response is terminal.

Reported: responses lost (never terminal within lease + sweep + slack after their replica
died, or gone; 0 expected), repeated side effects (a ref booked twice; 0 expected), how the
responses ended, and the longest time from a kill to the end of a response it interrupted.

    python benchmarks/replica_soak.py [--seconds 180] [--replicas 3] [--clients 6]
        [--store sqlite|postgres] [--seed 1]

Not a test (it is not run by CI; ``nox -s soak -- replicas`` runs it); it exits non-zero
when a check fails.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the replica harness of the test suite

import httpx2  # noqa: E402
from tests.replicas.harness import (  # noqa: E402
    LEASE,
    SLACK,
    SWEEP,
    TERMINAL,
    Cluster,
    Replica,
    cluster,
    job,
    sse_events,
)


class Soak:
    def __init__(self, pool: Cluster, args: argparse.Namespace) -> None:
        self.pool = pool
        self.args = args
        self.random = random.Random(args.seed)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.killed_at: dict[int, float] = {}  # id(replica) -> when it was killed
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.lost: list[str] = []
        self.refs: dict[str, str] = {}  # ref -> final status
        self.after_kill: list[float] = []
        self.kills = 0

    def alive(self) -> list[Replica]:
        with self.lock:
            return [r for r in self.pool.replicas if id(r) not in self.killed_at and r.alive]

    def killer(self) -> None:
        while not self.stop.wait(self.random.uniform(4.0, 10.0)):
            victims = self.alive()
            if len(victims) < 2:
                continue
            victim = self.random.choice(victims)
            with self.lock:
                self.killed_at[id(victim)] = time.monotonic()
            victim.kill()
            self.kills += 1
            with self.lock:
                self.pool.start()

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            self.one(rng)

    def one(self, rng: random.Random) -> None:
        ref = f"s{uuid.uuid4().hex[:12]}"
        body = {
            "model": "m",
            "input": job(
                ref,
                tool=rng.choice([0.0, 0.2, 1.0, 3.0]),
                first=rng.choice([0.0, 0.1, 0.5]),
                second=rng.choice([0.0, 0.1, 0.5]),
            ),
        }
        mode = rng.choice(["background", "foreground", "stream"])
        alive = self.alive()
        if not alive:
            time.sleep(0.1)
            return
        replica = rng.choice(alive)
        response_id = self.submit(replica, mode, body, ref)
        if response_id is None:
            if replica.alive and id(replica) not in self.killed_at:
                self.outcomes["refused"] += 1
                return
            ids = self.pool.store.ids_for(ref)
            if not ids:
                self.outcomes["never stored"] += 1  # killed before the request was taken
                return
            response_id = ids[0]
        status = self.wait(response_id, replica)
        with self.lock:
            self.refs[ref] = status
            self.outcomes[status] += 1

    def submit(self, replica: Replica, mode: str, body: dict[str, Any], ref: str) -> str | None:
        try:
            with httpx2.Client(base_url=replica.url + "/v1", timeout=120) as client:
                if mode == "background":
                    reply = client.post("/responses", json={**body, "background": True})
                    return str(reply.json()["id"]) if reply.status_code == 200 else None
                if mode == "foreground":
                    reply = client.post("/responses", json=body)
                    return str(reply.json()["id"]) if reply.status_code == 200 else None
                found: str | None = None
                with client.stream("POST", "/responses", json={**body, "stream": True}) as reply:
                    for event in sse_events(reply.iter_lines()):
                        if event["type"] == "response.created":
                            found = str(event["response"]["id"])
                return found
        except (httpx2.TransportError, json.JSONDecodeError, KeyError):
            return None

    def wait(self, response_id: str, started_on: Replica) -> str:
        while True:
            killed = self.killed_at.get(id(started_on))
            if killed is not None and time.monotonic() - killed > LEASE + SWEEP + SLACK:
                self.lost.append(response_id)
                return "lost"
            alive = self.alive()
            if alive:
                with contextlib.suppress(httpx2.TransportError):
                    reply = self.random.choice(alive).client.get(f"/responses/{response_id}")
                    if reply.status_code == 404:
                        self.lost.append(response_id)
                        return "lost"
                    status = str(reply.json()["status"])
                    if status in TERMINAL:
                        if killed is not None:
                            self.after_kill.append(time.monotonic() - killed)
                        return status
            time.sleep(0.1)

    def run(self) -> dict[str, Any]:
        for _ in range(self.args.replicas):
            self.pool.start()
        begun = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(self.args.clients + 1) as threads:
            jobs = [threads.submit(self.killer)]
            jobs += [
                threads.submit(self.client, self.args.seed * 1000 + i)
                for i in range(self.args.clients)
            ]
            time.sleep(self.args.seconds)
            self.stop.set()
            for each in jobs:
                each.result()
        effects = collections.Counter(self.pool.effects.read_text().splitlines())
        repeated = sorted(ref for ref, count in effects.items() if count > 1)
        completed_unbooked = sorted(
            ref for ref, status in self.refs.items() if status == "completed" and effects[ref] != 1
        )
        return {
            "seconds": round(time.monotonic() - begun, 1),
            "store": self.args.store,
            "replicas": self.args.replicas,
            "clients": self.args.clients,
            "kills": self.kills,
            "responses": sum(self.outcomes.values()),
            "outcomes": dict(self.outcomes),
            "lost": len(self.lost),
            "repeated_side_effects": len(repeated),
            "completed_without_one_booking": len(completed_unbooked),
            "interrupted_by_a_kill": len(self.after_kill),
            "max_seconds_from_kill_to_terminal": round(max(self.after_kill, default=0.0), 2),
            "bound_seconds": LEASE + SWEEP,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, cluster(args.store, Path(scratch)) as pool:
        report = Soak(pool, args).run()
    print(json.dumps(report, indent=2))
    failed = (
        report["lost"] or report["repeated_side_effects"] or report["completed_without_one_booking"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
