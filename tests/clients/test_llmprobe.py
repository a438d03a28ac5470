"""llmprobe 0.6.12 (the conformance CLI; issue 15) against ``responseloop serve`` over the
scripted upstream at its default depth: ``llmprobe <url>/v1 -m m --no-bench --no-save
--no-color --json`` (never ``--upload``: nothing leaves the machine; ``HOME`` is a temporary
directory so its library is not touched either). Each responses check it runs is its own
cell, and every one must pass but those :data:`NOT_PASSING` names.

The scripted model behaves like a real model where that lets a check judge the SERVER: it
calls the tools it is asked to (several at once unless ``parallel_tool_calls`` is false),
recalls what the conversation it was sent says, stops reasoning at ``reasoning_effort:
"none"``, writes JSON under ``response_format``. So those checks prove the server forwards
``tool_choice``, ``parallel_tool_calls``, the chained history, ``reasoning.effort`` and
``text.format`` to the upstream, and carries the answers back intact."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.clients.checking_proxy import CheckingProxy
from tests.clients.conftest import NODE_DIR, require_node

# The responses checks that judge the server: the wire shapes, SSE framing and event order,
# errors, usage and caps, tool-call serialization, and the forwarding of each request
# setting (the scripted model answers each setting as a real model does).
SERVER_CHECKS = (
    "responses-basic",
    "responses-streaming",
    "responses-parity",  # streamed vs not: the same text (the scripted model is deterministic)
    "responses-usage",
    "responses-stream-usage",
    "responses-finish-length",
    "responses-limits-max-tokens",  # max_output_tokens reaches the upstream as the cap
    "responses-unicode",  # no encoding damage
    "responses-errors",
    "responses-tool-serialization",
    "responses-tool-stream-reassembly",
    "responses-tool-result-turn",
    "responses-parallel-tools",  # parallel_tool_calls: true → several calls, distinct ids
    "responses-tool-choice-none",  # tool_choice "none" is forwarded
    "responses-parallel-tools-off",  # parallel_tool_calls: false is forwarded
    "responses-tool-arg-types",  # typed arguments survive the wire
    "responses-json-mode",  # text.format json_object → response_format
    "responses-structured-outputs",  # text.format json_schema → response_format
    "responses-structured-markers",  # marker strings in JSON arrive byte-exact
    "responses-vision",  # image input is accepted and answered
    "responses-reasoning",  # reasoning arrives in its own channel, not in the text
    "responses-reasoning-cap",  # a cap spent on reasoning is reported as a cap
    "responses-reasoning-effort-none",  # reasoning.effort "none" → reasoning_effort "none"
    "responses-event-order",
    "responses-previous-response-id",  # the chained history reaches the upstream
    "responses-background",
)
# The checks that pass or fail on the model's own quality, not the server's: they pass
# here only because the scripted model is deterministic and terse, and would say nothing
# about the server if they failed over a real model.
MODEL_CHECKS = (
    "responses-top-p",  # two samples at top_p ~0 agree: the sampler's determinism
    "responses-reasoning-scratchpad",  # the answer is just the number, not its working
)
# The responses checks llmprobe does not run (or cannot) here, with the outcome each has.
NOT_PASSING = {
    # Run only at --depth full (slow, or repeated runs): whether constrained output
    # terminates, whether arguments may spell the model's own delimiters (both the model's
    # doing), prompt-cache reporting (the upstream's cache) and concurrent isolation.
    "responses-structured-terminates": "skipped",
    "responses-tool-args-literal-delimiter": "skipped",
    "responses-prompt-caching": "skipped",
    "responses-prompt-cache-prefix": "skipped",
    "responses-concurrency": "skipped",
    "responses-concurrency-cache": "skipped",
    # llmprobe has no wire shape for reasoning in the history of a Responses request.
    "responses-reasoning-roundtrip": "unsupported",
    # The server sends no x-ratelimit-* headers (it does not pass the upstream's on).
    "responses-rate-limit-headers": "unsupported",
    # llmprobe does not host an MCP server for the server to call back into yet.
    "responses-mcp-tools": "unsupported",
}
# Never --upload: nothing leaves the machine.
PROBE_OPTIONS = ("-m", "m", "--no-bench", "--no-save", "--no-color", "--json")
REPORT: dict[str, Any] = {}


@pytest.fixture
def report(session_proxy: CheckingProxy, tmp_path: Path) -> dict[str, Any]:
    """llmprobe's JSON report, from one run per session."""
    require_node()
    if not REPORT:
        problems = len(session_proxy.problems)
        result = subprocess.run(
            ["npx", "--no-install", "llmprobe", session_proxy.url + "/v1", *PROBE_OPTIONS],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=NODE_DIR,
            env={**os.environ, "HOME": str(tmp_path)},
            check=False,
        )
        assert result.stdout.strip(), result.stderr[-4000:]
        REPORT.update(json.loads(result.stdout))
        REPORT["wire_problems"] = session_proxy.problems[problems:]
    return REPORT


def outcomes(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["id"]: check for check in report["conformance"]["results"]}


def responses_outcomes(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in outcomes(report).items() if v["surface"] == "responses"}


@pytest.mark.parametrize("check", SERVER_CHECKS + MODEL_CHECKS)
def test_llmprobe_check_passes(report: dict[str, Any], check: str) -> None:
    outcome = responses_outcomes(report)[check]
    assert outcome["outcome"] == "pass", (outcome["reason"], outcome["failures"])


def test_llmprobe_runs_exactly_the_listed_checks(report: dict[str, Any]) -> None:
    """Every responses check passes but :data:`NOT_PASSING`, which has exactly the listed
    outcomes (so a new llmprobe check, or one that starts to run, needs a place here)."""
    found = {k: v["outcome"] for k, v in responses_outcomes(report).items()}
    expected = {**dict.fromkeys(SERVER_CHECKS + MODEL_CHECKS, "pass"), **NOT_PASSING}
    assert found == expected


def test_llmprobe_finds_the_responses_surface(report: dict[str, Any]) -> None:
    surfaces = {entry["id"]: entry["supported"] for entry in report["coverage"]["entries"]}
    assert surfaces["responses"] is True
    by_surface = {entry["surface"]: entry for entry in report["conformance"]["bySurface"]}
    # The Responses API, and the model listing its clients read first (GET /v1/models).
    assert set(by_surface) == {"responses", "models"}
    for entry in by_surface.values():
        assert entry["passed"] == entry["total"] > 0
    assert sum(entry["total"] for entry in by_surface.values()) == report["conformance"]["total"]


def test_everything_served_to_llmprobe_passes_the_wire_checks(report: dict[str, Any]) -> None:
    assert not report["wire_problems"], "\n".join(report["wire_problems"])
