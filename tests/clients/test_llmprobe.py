"""llmprobe 0.6.12 (the conformance CLI; issue 15) against ``responseloop serve`` over the
scripted upstream: ``llmprobe <url>/v1 -m m --quick --no-bench --no-save --no-color --json``
(never ``--upload``: nothing leaves the machine; ``HOME`` is a temporary directory so its
library is not touched either). Each check that judges the server is its own cell."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.clients.checking_proxy import CheckingProxy
from tests.clients.conftest import NODE_DIR, require_node

# The checks llmprobe runs at --quick on a server with only /v1/responses that judge the
# server: the wire shapes, the SSE framing, errors, finish reasons, tool-call serialization.
SERVER_CHECKS = (
    "responses-basic",
    "responses-streaming",
    "responses-finish-length",
    "responses-errors",
    "responses-tool-serialization",
)
# The checks that judge the model, which a scripted model cannot meet: they may fail (or
# be inconclusive) without saying anything about the server. (At --quick most are not run.)
MODEL_CHECKS = {
    "responses-json-mode",  # JSON mode: does the model write valid JSON
    "responses-structured-outputs",  # does the model follow a JSON schema
    "responses-structured-markers",
    "responses-structured-terminates",
    "responses-tool-args-literal-delimiter",  # what the model writes in arguments
    "responses-tool-arg-types",
    "responses-reasoning",  # does the model reason (and within a cap)
    "responses-reasoning-cap",
    "responses-reasoning-scratchpad",
    "responses-vision",  # does the model see an image
    "responses-unicode",  # does the model repeat text back exactly
    "responses-limits-max-tokens",  # does the model stop at the cap (the upstream's job)
    "responses-prompt-caching",  # does the upstream cache prompts
    "responses-prompt-cache-prefix",
    "responses-top-p",  # sampling: the scripted model is deterministic
    "responses-parity",  # streamed vs not: the same sampled text
}
# Never --upload: nothing leaves the machine.
PROBE_OPTIONS = ("-m", "m", "--quick", "--no-bench", "--no-save", "--no-color", "--json")
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


@pytest.mark.parametrize("check", SERVER_CHECKS)
def test_llmprobe_server_check_passes(report: dict[str, Any], check: str) -> None:
    outcome = outcomes(report)[check]
    assert outcome["outcome"] == "pass", outcome["failures"]


def test_llmprobe_fails_no_check_but_those_judging_the_model(report: dict[str, Any]) -> None:
    judged = {
        check_id
        for check_id, check in outcomes(report).items()
        if check["outcome"] in ("fail", "inconclusive")
    }
    assert judged <= MODEL_CHECKS, judged - MODEL_CHECKS


def test_llmprobe_finds_the_responses_surface(report: dict[str, Any]) -> None:
    surfaces = {entry["id"]: entry["supported"] for entry in report["coverage"]["entries"]}
    assert surfaces["responses"] is True
    assert report["conformance"]["bySurface"] == [
        {
            "surface": "responses",
            **{k: report["conformance"][k] for k in ("passed", "total", "pct")},
        }
    ]


def test_everything_served_to_llmprobe_passes_the_wire_checks(report: dict[str, Any]) -> None:
    assert not report["wire_problems"], "\n".join(report["wire_problems"])
