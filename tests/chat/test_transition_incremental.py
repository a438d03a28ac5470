"""ChatTransition translates a growing chain incrementally: whatever the chain, extending
an earlier translation gives exactly what translating it from scratch gives."""

from __future__ import annotations

import gc
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from responseloop import ChatTransition, LoopConfig
from responseloop.abc import JSON, AppendSteps, ChainStep, Scope, StepState, ToolSchema
from responseloop.chat import _transition
from tests.chains import completion, model_step, tool_step

BODY: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "tools": [{"type": "function", "function": {"name": "c", "parameters": {}}}],
}
SCOPE = Scope("resp_1", None, 0, {name: ToolSchema(name) for name in ("t", "u")})
CONFIG = LoopConfig()
NAMES = st.sampled_from(["t", "u", "c", "x"])  # server, server, client, unknown


@st.composite
def rounds(draw: st.DrawFn) -> list[tuple[ChainStep, list[ChainStep]]]:
    """Model turns, each with the tool steps answering some of its calls: call ids may
    repeat, tools may fail, a model step may have failed or been cancelled."""
    found: list[tuple[ChainStep, list[ChainStep]]] = []
    sequence = 0
    for turn in range(draw(st.integers(1, 6))):
        calls = [
            (draw(st.sampled_from([f"call_{turn}_{i}", "call_same"])), draw(NAMES), {"a": i})
            for i in range(draw(st.integers(0, 3)))
        ]
        extra: dict[str, Any] = {"reasoning_content": "thought"} if draw(st.booleans()) else {}
        state = draw(st.sampled_from([StepState.COMPLETED] * 4 + [StepState.FAILED]))
        sequence += 1
        error = {"type": "upstream_error", "message": "boom"} if state is StepState.FAILED else None
        model = model_step(
            sequence, completion("text", calls=calls, **extra), state=state, error=error
        )
        tools = []
        for call_id, name, _ in calls:
            if draw(st.booleans()):
                sequence += 1
                failed = draw(st.booleans())
                tools.append(
                    tool_step(
                        sequence,
                        name,
                        call_id,
                        {"out": sequence},
                        state=StepState.FAILED if failed else StepState.COMPLETED,
                        error={"message": "bad"} if failed else None,
                    )
                )
        found.append((model, tools))
    return found


def fresh(chain: list[ChainStep]) -> list[ChainStep]:
    """The same steps as new objects: nothing translated earlier can be reused for them."""
    return [attrs.evolve(step) for step in chain]


transitions = st.builds(
    ChatTransition,
    st.just(BODY),
    max_tool_calls=st.sampled_from([None, 0, 1, 2, 5]),
    keep_reasoning=st.booleans(),
    allowed_tools=st.sampled_from([None, ("t", "c"), ("u",)]),
)


@settings(max_examples=150, deadline=None)
@given(rounds(), transitions, st.booleans())
def test_a_chain_grown_step_by_step_translates_as_from_scratch(
    found: list[tuple[ChainStep, list[ChainStep]]], transition: ChatTransition, leading: bool
) -> None:
    # The loop's way: append each step pending, then replace it by its finished self,
    # deciding after each change; every decision must equal one on a fresh chain.
    chain: list[ChainStep] = []
    if leading:  # a tool step before any model step belongs to no round
        chain.append(tool_step(0, "t", "call_lead", "ignored"))
    offered = {name: tool for name, tool in SCOPE.tools.items() if transition._callable(name)}
    steps = [step for model, tools in found for step in [model, *tools]]
    for step in steps:
        pending = attrs.evolve(step, state=StepState.PENDING, response_payload=None, error=None)
        for version in (pending, step):
            if version is step:
                chain[-1] = step
            else:
                chain.append(version)
            args = (offered, transition.max_tool_calls, transition.keep_reasoning)
            incremental = _transition._conversation(chain, *args)
            assert incremental == _transition._conversation(fresh(chain), *args)
            assert transition.decide(chain, SCOPE, CONFIG) == transition.decide(
                fresh(chain), SCOPE, CONFIG
            )


@settings(max_examples=100, deadline=None)
@given(rounds(), rounds(), transitions)
def test_two_chains_sharing_a_transition_do_not_mix(
    first: list[tuple[ChainStep, list[ChainStep]]],
    second: list[tuple[ChainStep, list[ChainStep]]],
    transition: ChatTransition,
) -> None:
    # Two responses decided in turn by one transition (as a service does), then a chain
    # that forks from the first one's prefix: each as if it were the only one.
    chains = [
        [step for model, tools in found for step in [model, *tools]] for found in (first, second)
    ]
    prefixes = [[chain[: i + 1] for i in range(len(chain))] for chain in chains]
    for a, b in zip(*prefixes, strict=False):
        for prefix in (a, b):
            assert transition.decide(prefix, SCOPE, CONFIG) == transition.decide(
                fresh(prefix), SCOPE, CONFIG
            )
    fork = [*chains[0][:1], *chains[1][1:]]
    assert transition.decide(fork, SCOPE, CONFIG) == transition.decide(fresh(fork), SCOPE, CONFIG)


def test_a_long_chain_keeps_one_translation_and_drops_it_with_the_chain() -> None:
    transition = ChatTransition(BODY)
    chain: list[ChainStep] = []
    gc.collect()
    before = len(_transition._PREFIXES)
    for turn in range(30):
        call: tuple[str, str, JSON] = (f"call_{turn}", "t", {})
        chain.append(model_step(2 * turn + 1, completion(calls=[call])))
        chain.append(tool_step(2 * turn + 2, "t", f"call_{turn}", {"n": turn}))
        action = transition.decide(chain, SCOPE, CONFIG)
        assert action == transition.decide(fresh(chain), SCOPE, CONFIG)
        gc.collect()  # the fresh copies' entries go with them
        assert len(_transition._PREFIXES) == before + 1  # one entry for the chain
    assert isinstance(action, AppendSteps)
    messages = action.steps[0].request_payload["messages"]
    assert [m["role"] for m in messages] == ["user"] + ["assistant", "tool"] * 30
    del chain
    gc.collect()
    assert len(_transition._PREFIXES) == before
