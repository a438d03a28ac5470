"""Server-side tools for the replica tests' ``responseloop serve`` processes
(``--tools tests.replicas.replica_tools:tools``).

``book`` is the side effect that must never happen twice: it appends its ``ref`` to the
file named by ``$RESPONSELOOP_REPLICA_EFFECTS`` (shared by every replica, so a second run
of the same call, on any process, shows as a second line), then takes ``seconds``. Its
progress goes to ``$RESPONSELOOP_REPLICA_MARKS``: ``start REF``, then ``end REF`` or
``cancelled REF``, so a test can kill a replica while the tool runs.
"""

from __future__ import annotations

import os
from typing import Any

import anyio

from responseloop import FunctionTools

EFFECTS_ENV = "RESPONSELOOP_REPLICA_EFFECTS"
MARKS_ENV = "RESPONSELOOP_REPLICA_MARKS"

tools = FunctionTools()


def _append(variable: str, line: str) -> None:
    # One write of a short line in append mode: whole lines even with several writers.
    with open(os.environ[variable], "a", encoding="utf-8") as file:
        file.write(line + "\n")


@tools.tool(
    parameters={
        "type": "object",
        "properties": {"ref": {"type": "string"}, "seconds": {"type": "number"}},
        "required": ["ref"],
    }
)
async def book(ref: str, seconds: float = 0.0) -> dict[str, Any]:
    """Book ``ref`` (not idempotent: a second call books it twice)."""
    _append(EFFECTS_ENV, ref)
    _append(MARKS_ENV, f"start {ref}")
    try:
        await anyio.sleep(seconds)
    except BaseException:
        _append(MARKS_ENV, f"cancelled {ref}")
        raise
    _append(MARKS_ENV, f"end {ref}")
    return {"booked": ref}
