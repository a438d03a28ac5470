"""Hypothesis properties of the loop over scripted models."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responseloop import InMemoryStore, LoopConfig
from responseloop.abc import ChainStep, Complete, Fail
from responseloop.testing import ChatReply, ScriptedChatModel
from tests.loop_helpers import RESPONSE_ID, mixed_tools, run

TOOL_NAMES = ["ok", "broken", "unknown", "agent"]

calls = st.lists(st.sampled_from(TOOL_NAMES), min_size=1, max_size=3).map(
    lambda names: ChatReply.calls(*[(n, {"i": i}, f"c{i}") for i, n in enumerate(names)])
)
replies = st.one_of(
    st.builds(ChatReply.text, st.text(max_size=10)),
    calls,
    st.sampled_from([ChatReply.error(500), ChatReply.error(429), ChatReply.unreachable()]),
)
configs = st.builds(
    LoopConfig,
    max_iterations=st.integers(1, 5),
    max_depth=st.integers(0, 2),
    max_tool_calls=st.none() | st.integers(0, 6),
    tool_errors=st.sampled_from(["feed_back", "fail"]),
    unknown_tools=st.sampled_from(["feed_back", "fail"]),
)


async def every_step(store: InMemoryStore) -> list[ChainStep]:
    """Every step of the response, across its scopes, through the public API."""
    steps: list[ChainStep] = []
    scopes: list[str | None] = [None]
    while scopes:
        chain = await store.list_chain(RESPONSE_ID, scopes.pop())
        steps += chain
        scopes += [s.id for s in chain if s.is_tool]
    return steps


async def run_script(script: list[ChatReply], config: LoopConfig) -> None:
    answers = iter(script)

    def next_reply(request: Any) -> ChatReply:
        return next(answers, ChatReply.text("final"))

    store = InMemoryStore()
    model = ScriptedChatModel([next_reply] * 1000)
    outcome = await run(model, store=store, tools=mixed_tools(), config=config)

    assert isinstance(outcome, Complete | Fail)
    steps = await every_step(store)
    assert all(s.state.is_terminal for s in steps)
    scopes = {s.scope for s in steps}
    for scope in scopes:
        scope_model_calls = [s for s in steps if s.scope == scope and s.kind.value == "model_call"]
        assert len(scope_model_calls) <= config.max_iterations
    depth_of: dict[str | None, int] = {None: 0}
    for step in sorted(steps, key=lambda s: s.sequence):
        depth_of.setdefault(step.id, depth_of[step.scope] + 1)
    assert max(depth_of[s.scope] for s in steps) <= config.max_depth
    tool_steps = [s for s in steps if s.kind.value == "tool_call"]
    if config.max_tool_calls is not None:
        assert len(tool_steps) <= config.max_tool_calls


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(replies, max_size=12), config=configs)
def test_the_loop_always_terminates_within_its_caps_with_every_step_terminal(
    backend: str, script: list[ChatReply], config: LoopConfig
) -> None:
    anyio.run(partial(run_script, script, config), backend=backend)
