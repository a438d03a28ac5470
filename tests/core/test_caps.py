"""The loop's caps: model calls per scope, tool calls per response."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from responseloop import LoopConfig
from responseloop.abc import ChainStep, StepDescriptor, StepKind, StepState
from responseloop.core import exceeds_max_iterations, exceeds_max_tool_calls

MODEL_CALL = StepDescriptor.model_call({"model": "m"})
TOOL_CALL = StepDescriptor.tool_call("t", "c", {})


def chain_of(kinds: list[StepKind], state: StepState = StepState.COMPLETED) -> list[ChainStep]:
    payload = {"model": "m"}
    return [
        ChainStep(f"step_{i}", kind, state, i, payload if kind is StepKind.MODEL_CALL else {})
        for i, kind in enumerate(kinds, start=1)
    ]


def test_the_iteration_cap_allows_exactly_max_iterations_model_calls() -> None:
    config = LoopConfig(max_iterations=2)
    one_call = chain_of([StepKind.MODEL_CALL, StepKind.TOOL_CALL])
    assert not exceeds_max_iterations(one_call, [MODEL_CALL], config)
    assert exceeds_max_iterations(one_call, [MODEL_CALL, MODEL_CALL], config)
    assert exceeds_max_iterations(chain_of([StepKind.MODEL_CALL] * 2), [MODEL_CALL], config)


def test_tool_calls_do_not_count_as_iterations() -> None:
    config = LoopConfig(max_iterations=1)
    assert not exceeds_max_iterations(chain_of([StepKind.TOOL_CALL] * 5), [TOOL_CALL], config)
    assert not exceeds_max_iterations([], [MODEL_CALL, TOOL_CALL, TOOL_CALL], config)


def test_a_failed_model_call_still_counts() -> None:
    failed = chain_of([StepKind.MODEL_CALL], StepState.FAILED)
    assert exceeds_max_iterations(failed, [MODEL_CALL], LoopConfig(max_iterations=1))


@given(
    st.lists(st.sampled_from(list(StepKind)), max_size=12),
    st.lists(st.sampled_from([MODEL_CALL, TOOL_CALL]), max_size=4),
    st.integers(min_value=1, max_value=12),
)
def test_the_iteration_cap_counts_model_calls_of_the_chain_and_the_plan(
    kinds: list[StepKind], planned: list[StepDescriptor], cap: int
) -> None:
    calls = kinds.count(StepKind.MODEL_CALL) + planned.count(MODEL_CALL)
    config = LoopConfig(max_iterations=cap)
    assert exceeds_max_iterations(chain_of(kinds), planned, config) is (calls > cap)


@given(st.integers(min_value=0, max_value=50), st.none() | st.integers(0, 50))
def test_the_tool_call_cap_is_a_strict_upper_bound_or_none(calls: int, cap: int | None) -> None:
    exceeded = exceeds_max_tool_calls(calls, LoopConfig(max_tool_calls=cap))
    assert exceeded is (cap is not None and calls > cap)
