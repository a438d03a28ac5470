"""The resume policy: what a run taking a scope over may run of what an earlier run left.

A step is recorded before it runs, so a worker that dies leaves its steps in the store as
they were: pending (recorded, never started), processing (perhaps half done, perhaps with
effects) or cancelled. A run resuming the scope settles those steps before it decides.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..abc._config import LoopConfig
from ..abc._steps import ChainStep, StepKind, StepState
from ..abc._tools import ToolKind, ToolSchema

__all__ = ["may_run_on_resume", "unfinished_steps"]

_UNFINISHED = (StepState.PENDING, StepState.PROCESSING, StepState.CANCELLED)


def unfinished_steps(chain: Sequence[ChainStep]) -> list[int]:
    """The indices, in chain order, of the steps an earlier run left unfinished: pending,
    processing or cancelled. A run resuming the scope runs them, or fails the scope when
    :func:`may_run_on_resume` refuses one of them."""
    return [i for i, step in enumerate(chain) if step.state in _UNFINISHED]


def may_run_on_resume(step: ChainStep, tool: ToolSchema | None, config: LoopConfig) -> bool:
    """Whether a run resuming the scope may run ``step``, an unfinished step, (again).

    ``tool`` is the schema the scope offers under the step's tool name (``None`` for a model
    call, or a tool the scope no longer offers). A pending step never started, so it cannot
    have had effects and always may run. A step left processing or cancelled may already
    have had effects, so it is re-fired only when that is safe or allowed: a model call with
    :attr:`~responseloop.LoopConfig.refire_model_calls`; an agent step always, since its
    sub-loop resumes under these same rules step by step; another tool only when its schema
    says it is idempotent and :attr:`~responseloop.LoopConfig.refire_idempotent_tools`
    allows it; a tool listing always (it only reads); a compaction always (a summary
    has no effects, and the next decision needs it). Any other step is abandoned, and
    fails the scope with ``step_abandoned``.
    """
    if step.state is StepState.PENDING:
        return True  # recorded but never started: it cannot have had effects
    if step.kind in (StepKind.TOOL_LISTING, StepKind.COMPACTION):
        return True  # a listing reads and a summary has no effects: running again is safe
    if step.kind is StepKind.MODEL_CALL:
        return config.refire_model_calls
    if tool is not None and tool.kind is ToolKind.AGENT:
        return True  # its sub-loop resumes under the same rules, step by step
    return tool is not None and tool.idempotent and config.refire_idempotent_tools
