"""Where the time goes: cProfile summaries of the loop.

Two views:

* **the loop's own time**: ``run_response_loop`` with ``InMemoryStore`` over an in-process
  model that answers at once (no HTTP), so every sample is the loop, its store, its
  transition, anyio and the event loop;
* **a response over HTTP at 200 concurrent**: the same over ``HttpxClient`` and the
  loopback upstream, showing what share the HTTP client takes.

Each view lists the time by package (own time of its functions) and the top functions.
Profiling slows everything several times over: shares matter here, not the microseconds.

    python benchmarks/hotspots.py
"""

from __future__ import annotations

import collections
import cProfile
import pstats
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from common import upstream_process


@dataclass
class Profile:
    title: str
    responses: int
    groups: list[tuple[str, float]]  # (package or module, share of own time)
    top: list[tuple[str, float, float]]  # (function, share of own time, calls per response)


def _group(filename: str) -> str:
    if "/responseloop/" in filename:
        return "responseloop/" + filename.split("/responseloop/", 1)[1]
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if filename == "~":
        return "builtins (C)"
    if filename.startswith("<frozen "):
        return "stdlib " + filename.removeprefix("<frozen ").removesuffix(">")
    if filename.startswith("<"):
        return filename  # attrs-generated methods and the like
    if "/lib/python3" in filename:
        return "stdlib " + filename.split("/lib/python3", 1)[1].split("/", 1)[1].removesuffix(".py")
    return filename.rsplit("/", 1)[-1]


def _function(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    return f"{_group(filename)}:{line}({name})"


def summarize(title: str, stats: pstats.Stats, responses: int, top: int = 15) -> Profile:
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values()) or 1.0
    groups: collections.Counter[str] = collections.Counter()
    for (filename, _, _), entry in entries.items():
        groups[_group(filename)] += entry[2]
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return Profile(
        title,
        responses,
        [(name, seconds / total) for name, seconds in groups.most_common(12)],
        [(_function(key), entry[2] / total, entry[1] / responses) for key, entry in ranked],
    )


async def _profiled(run: Callable[[], Awaitable[None]]) -> pstats.Stats:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await run()
    finally:
        profiler.disable()
    return pstats.Stats(profiler)


async def loop_alone(responses: int = 3000) -> Profile:
    from overhead import add, looped
    from overhead import measure as measure_in_process

    from responseloop import InMemoryStore, LeaseKeeper
    from responseloop.testing import RecordingToolExecutor

    tools = RecordingToolExecutor()
    tools.add("add", add)
    async with LeaseKeeper() as keeper:
        await measure_in_process(looped(InMemoryStore(), tools, keeper), 300, 1)  # warm up

        async def run() -> None:
            await measure_in_process(looped(InMemoryStore(), tools, keeper), responses, 1)

        stats = await _profiled(run)
    return summarize("the loop's own time (in-process model, InMemoryStore)", stats, responses)


async def over_http(base_url: str, responses: int = 2000, concurrency: int = 200) -> Profile:
    from throughput import Loop, measure, memory_store

    contender = Loop("loop (memory)", memory_store)
    await contender.open(base_url)
    try:
        await measure(contender, base_url, 400, concurrency)  # warm up: open the pool

        async def run() -> None:
            await measure(contender, base_url, responses, concurrency)

        stats = await _profiled(run)
    finally:
        await contender.aclose()
    return summarize(
        f"a response over HttpxClient (httpx2), {concurrency} concurrent", stats, responses
    )


async def run_all(base_url: str) -> list[Profile]:
    return [await loop_alone(), await over_http(base_url)]


def render(profile: Profile) -> list[str]:
    lines = [f"{profile.title}: share of profiled time by package", ""]
    lines += [f"  {share:6.1%}  {name}" for name, share in profile.groups]
    lines += ["", "  top functions (own time; calls per response):", ""]
    lines += [f"  {share:6.1%}  {calls:6.1f}  {name}" for name, share, calls in profile.top]
    return lines


if __name__ == "__main__":
    with upstream_process() as base:
        for found in anyio.run(run_all, base):
            print("\n".join(render(found)), end="\n\n")
    sys.exit(0)
