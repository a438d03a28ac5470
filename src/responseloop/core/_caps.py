"""The loop's caps: how many model calls a scope, and tool calls a response, may make."""

from __future__ import annotations

import operator
from collections.abc import Sequence

from ..abc._config import LoopConfig
from ..abc._steps import ChainStep, StepDescriptor, StepKind

__all__ = ["exceeds_max_iterations", "exceeds_max_tool_calls"]

# The loop checks the cap before every batch of steps it adds; map() and list.count run in
# C, so the check costs the loop less than a generator over the chain did.
_kind = operator.attrgetter("kind")


def exceeds_max_iterations(
    chain: Sequence[ChainStep], planned: Sequence[StepDescriptor], config: LoopConfig
) -> bool:
    """Whether running the ``planned`` steps after the scope's ``chain`` would make the scope
    call the model more than :attr:`~responseloop.LoopConfig.max_iterations` times.

    Every model-call step of the chain counts, whatever its state, so a failed call still
    counts and the cap holds across a resume (it is counted from the stored chain).
    """
    model_calls = [*map(_kind, chain), *map(_kind, planned)].count(StepKind.MODEL_CALL)
    return model_calls > config.max_iterations


def exceeds_max_tool_calls(tool_calls: int, config: LoopConfig) -> bool:
    """Whether ``tool_calls`` server-side tool calls in one response (across all its scopes)
    are more than :attr:`~responseloop.LoopConfig.max_tool_calls` allows (``None``: no cap)."""
    cap = config.max_tool_calls
    return cap is not None and tool_calls > cap
