"""The Node clients against ``responseloop serve`` (behind the checking proxy): the official
``openai`` 7.59.0, the Vercel AI SDK (``ai`` 6.0.326 + ``@ai-sdk/openai`` 3.0.141,
``generateText`` and ``streamText``) and the OpenAI Agents SDK for JS (``@openai/agents``
0.20.0, ``run`` with and without ``stream: true``); exact versions in
``tests/clients/node/package-lock.json``.

Each client's scenarios run in one node process (``tests/clients/node/*.mjs``), which
prints one JSON result per scenario; each test here judges one cell of the matrix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.clients import scripted_model
from tests.clients.checking_proxy import CheckingProxy
from tests.clients.conftest import run_node, user_messages
from tests.clients.server_tools import WEATHER
from tests.loopback_upstream import Upstream


class Run:
    """One script's results, and what the upstream received and the proxy found meanwhile."""

    def __init__(
        self, results: dict[str, Any], bodies: list[Any], requests: list[Any], problems: list[str]
    ) -> None:
        self.results = results
        self.bodies = bodies
        self.requests = requests
        self.problems = problems


RUNS: dict[str, Run] = {}


@pytest.fixture
def node_run(
    request: pytest.FixtureRequest, clients_upstream: Upstream, session_proxy: CheckingProxy
) -> Callable[[str], Run]:
    """Runs a script once per session (its cells share the run)."""

    def get(script: str) -> Run:
        if script not in RUNS:
            received, problems = len(clients_upstream.received), len(session_proxy.problems)
            exchanged = len(session_proxy.exchanges)
            results = run_node(script, session_proxy.url + "/v1")
            RUNS[script] = Run(
                results,
                [r.json() for r in clients_upstream.received[received:]],
                [e.body for e in session_proxy.exchanges[exchanged:] if e.method == "POST"],
                session_proxy.problems[problems:],
            )
        return RUNS[script]

    return get


def result(run: Run, scenario: str) -> dict[str, Any]:
    value: dict[str, Any] = run.results[scenario]
    assert "error" not in value, value["error"]
    return value


def judge(run: Run, scenario: str) -> None:
    """Judge one scenario by its kind (the name's prefix)."""
    value = result(run, scenario)
    kind = scenario.rsplit("_", 1)[0]
    if kind == "plain":
        assert value["text"] == scripted_model.HELLO
    elif kind == "client_tool":
        assert value["text"] == "Result: lookup-k1"
        assert value.get("ran", ["k1"]) == ["k1"]  # the client's tool ran once
        assert value.get("calls", ["client_lookup"]) == ["client_lookup"]
    elif kind == "server_tool":
        assert value["text"] == f"Result: {WEATHER}"
        assert value.get("toolCalls", []) == []  # nothing the client could run
        assert value.get("serverCalls", ["mcp.server_weather"]) == ["mcp.server_weather"]
    elif kind == "both_tools":
        assert value["text"] == f"Result: {WEATHER} | lookup-k1"
        assert value.get("ran", ["k1"]) == ["k1"]
        assert value.get("toolCalls", ["client_lookup"]) == ["client_lookup"]
        assert value.get("serverCalls", ["mcp.server_weather"]) == ["mcp.server_weather"]
        assert value.get("calls", ["client_lookup"]) == ["client_lookup"]
    elif kind in ("previous_response_id", "default_history", "unstored_history"):
        said = re.fullmatch(r"Your word is (\w+)\.", value["text"])
        assert said is not None, value["text"]
        conversation = [f"my word is {said.group(1)}", "what is my word?"]
        assert any(user_messages(b) == conversation for b in run.bodies)
    elif kind == "reasoning":
        assert value["text"] == scripted_model.THOUGHT
    else:
        raise AssertionError(f"no judge for {scenario}")


KINDS = [
    "plain", "client_tool", "server_tool", "both_tools", "previous_response_id",
    "default_history", "unstored_history", "reasoning",
]  # fmt: skip


def cells(tags: tuple[str, str], *, without: tuple[str, ...] = ()) -> list[str]:
    """One cell per scenario kind (but ``without``) and tag: ``<kind>_<tag>``."""
    return [f"{kind}_{tag}" for tag in tags for kind in KINDS if kind not in without]


# --- openai (Node) ------------------------------------------------------------------------


# The bare client keeps no history of its own: its replayed history is unstored_history.
@pytest.mark.parametrize("scenario", cells(("create", "stream"), without=("default_history",)))
def test_openai_node(node_run: Callable[[str], Run], scenario: str) -> None:
    judge(node_run("openai.mjs"), scenario)


@pytest.mark.parametrize("tag", ["create", "stream"])
def test_openai_node_server_tool_is_one_mcp_call(node_run: Callable[[str], Run], tag: str) -> None:
    assert result(node_run("openai.mjs"), f"server_tool_{tag}")["types"] == ["mcp_call", "message"]


@pytest.mark.parametrize("tag", ["create", "stream"])
def test_openai_node_reasoning_summary(node_run: Callable[[str], Run], tag: str) -> None:
    summary = result(node_run("openai.mjs"), f"reasoning_{tag}")["summary"]
    assert summary == [scripted_model.REASONING]


# --- Vercel AI SDK --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scenario",
    cells(("generateText", "streamText")),
)
def test_ai_sdk(node_run: Callable[[str], Run], scenario: str) -> None:
    judge(node_run("ai-sdk.mjs"), scenario)


@pytest.mark.parametrize("tag", ["generateText", "streamText"])
def test_ai_sdk_default_history_refers_to_stored_items(
    node_run: Callable[[str], Run], tag: str
) -> None:
    """With its default ``store: true`` the AI SDK sends the earlier answer as an
    ``item_reference``, which the server resolves (the cell above sees the answer)."""
    run = node_run("ai-sdk.mjs")
    judge(run, f"default_history_{tag}")
    follow_ups = [
        body["input"]
        for body in run.requests
        if isinstance(body.get("input"), list) and f"aisdkhistory{tag}" in json.dumps(body["input"])
    ]
    assert [item.get("type") for item in follow_ups[-1]] == [None, "item_reference", None]


@pytest.mark.parametrize("tag", ["generateText", "streamText"])
def test_ai_sdk_reasoning_summary(node_run: Callable[[str], Run], tag: str) -> None:
    value = result(node_run("ai-sdk.mjs"), f"reasoning_{tag}")
    assert value["reasoning"] == scripted_model.REASONING


# --- @openai/agents -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scenario",
    # The SDK's history (result.history) is replayed as is: that is default_history. It
    # replays an mcp_call without its output, which the server restores from the store.
    cells(("run", "stream"), without=("unstored_history",)),
)
def test_openai_agents_js(node_run: Callable[[str], Run], scenario: str) -> None:
    judge(node_run("agents.mjs"), scenario)


@pytest.mark.parametrize("tag", ["run", "stream"])
def test_openai_agents_js_reasoning_summary(node_run: Callable[[str], Run], tag: str) -> None:
    assert result(node_run("agents.mjs"), f"reasoning_{tag}")["reasoning"] == [
        scripted_model.REASONING
    ]


@pytest.mark.parametrize("script", ["openai.mjs", "ai-sdk.mjs", "agents.mjs"])
def test_everything_served_to_the_node_clients_passes_the_wire_checks(
    node_run: Callable[[str], Run], script: str
) -> None:
    problems = node_run(script).problems
    assert not problems, "\n".join(problems)
