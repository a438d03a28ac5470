"""The resume policy: which unfinished steps a run taking a scope over may run again."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop import LoopConfig
from responseloop.abc import AgentSpec, ChainStep, StepKind, StepState, ToolKind, ToolSchema
from responseloop.core import may_run_on_resume, unfinished_steps

TOOL = ToolSchema("t")
IDEMPOTENT = ToolSchema("t", idempotent=True)
AGENT = ToolSchema("t", kind=ToolKind.AGENT, agent=AgentSpec())
LEFT_IN_FLIGHT = (StepState.PROCESSING, StepState.CANCELLED)


def step(kind: StepKind, state: StepState, sequence: int = 1) -> ChainStep:
    payload = {"name": "t", "call_id": "c"} if kind is StepKind.TOOL_CALL else {"model": "m"}
    return ChainStep(f"step_{sequence}", kind, state, sequence, payload)


def model_call(state: StepState) -> ChainStep:
    return step(StepKind.MODEL_CALL, state)


def tool_call(state: StepState) -> ChainStep:
    return step(StepKind.TOOL_CALL, state)


configs = st.builds(
    LoopConfig, refire_model_calls=st.booleans(), refire_idempotent_tools=st.booleans()
)
tools = st.sampled_from([None, TOOL, IDEMPOTENT, AGENT])
kinds = st.sampled_from(list(StepKind))
states = st.sampled_from(list(StepState))


def test_unfinished_steps_are_the_pending_processing_and_cancelled_ones() -> None:
    chain = [
        step(StepKind.MODEL_CALL, state, sequence)
        for sequence, state in enumerate(
            [
                StepState.COMPLETED,
                StepState.PENDING,
                StepState.FAILED,
                StepState.PROCESSING,
                StepState.CANCELLED,
            ],
            start=1,
        )
    ]
    assert unfinished_steps(chain) == [1, 3, 4]
    assert unfinished_steps([]) == []


@given(st.lists(states, max_size=8))
def test_unfinished_steps_keep_chain_order_and_skip_only_settled_steps(
    chain_states: list[StepState],
) -> None:
    chain = [step(StepKind.TOOL_CALL, s, i) for i, s in enumerate(chain_states, start=1)]
    found = unfinished_steps(chain)
    assert found == sorted(found)
    settled = (StepState.COMPLETED, StepState.FAILED)
    assert [i for i in range(len(chain)) if i not in found] == [
        i for i, s in enumerate(chain_states) if s in settled
    ]


@given(kinds, tools, configs)
def test_a_pending_step_always_runs_on_resume(
    kind: StepKind, tool: ToolSchema | None, config: LoopConfig
) -> None:
    assert may_run_on_resume(step(kind, StepState.PENDING), tool, config)


@pytest.mark.parametrize("state", LEFT_IN_FLIGHT)
def test_a_model_call_left_in_flight_is_resent_only_when_the_config_allows(
    state: StepState,
) -> None:
    assert not may_run_on_resume(model_call(state), None, LoopConfig())
    assert may_run_on_resume(model_call(state), None, LoopConfig(refire_model_calls=True))
    # The tool-refire switch is about tools only.
    assert not may_run_on_resume(model_call(state), None, LoopConfig(refire_idempotent_tools=True))


@pytest.mark.parametrize("state", LEFT_IN_FLIGHT)
def test_an_idempotent_tool_left_in_flight_is_rerun_only_when_the_config_allows(
    state: StepState,
) -> None:
    allowing = LoopConfig(refire_idempotent_tools=True)
    assert may_run_on_resume(tool_call(state), IDEMPOTENT, allowing)
    assert not may_run_on_resume(tool_call(state), IDEMPOTENT, LoopConfig())
    assert not may_run_on_resume(tool_call(state), TOOL, allowing)
    assert not may_run_on_resume(tool_call(state), IDEMPOTENT, LoopConfig(refire_model_calls=True))


@given(st.sampled_from(LEFT_IN_FLIGHT), configs)
def test_an_agent_step_left_in_flight_always_resumes(state: StepState, config: LoopConfig) -> None:
    # Its sub-loop resumes step by step under the same policy.
    assert may_run_on_resume(tool_call(state), AGENT, config)


@given(st.sampled_from(LEFT_IN_FLIGHT), configs)
def test_a_tool_the_scope_no_longer_offers_is_never_rerun(
    state: StepState, config: LoopConfig
) -> None:
    assert not may_run_on_resume(tool_call(state), None, config)


@given(kinds, st.sampled_from(LEFT_IN_FLIGHT), tools, configs)
def test_allowing_more_refires_never_abandons_more_steps(
    kind: StepKind, state: StepState, tool: ToolSchema | None, config: LoopConfig
) -> None:
    permissive = LoopConfig(refire_model_calls=True, refire_idempotent_tools=True)
    if may_run_on_resume(step(kind, state), tool, config):
        assert may_run_on_resume(step(kind, state), tool, permissive)
