"""Pure, dialect-neutral decisions of the loop: no I/O.

How a step may move between states (:data:`STEP_MOVES`, :func:`check_step_move`), what a
run resuming a scope may run again (:func:`unfinished_steps`, :func:`may_run_on_resume`),
the loop's caps (:func:`exceeds_max_iterations`, :func:`exceeds_max_tool_calls`) and the
client/server tool-name clash (:func:`tool_name_clash`), and what a compaction asks the
model (:data:`DEFAULT_COMPACTION_PROMPT`) and shows it in place of what it summarised
(:data:`SUMMARY_PREFIX`). The anyio shell in
``responseloop.loop`` and the stores carry them out.
"""

from __future__ import annotations

from ._caps import exceeds_max_iterations, exceeds_max_tool_calls
from ._compaction import DEFAULT_COMPACTION_PROMPT, SUMMARY_PREFIX
from ._resume import may_run_on_resume, unfinished_steps
from ._steps import STEP_MOVES, check_step_move, refused_step_move, step_move_sources
from ._tool_names import tool_name_clash

__all__ = [
    "DEFAULT_COMPACTION_PROMPT",
    "STEP_MOVES",
    "SUMMARY_PREFIX",
    "check_step_move",
    "exceeds_max_iterations",
    "exceeds_max_tool_calls",
    "may_run_on_resume",
    "refused_step_move",
    "step_move_sources",
    "tool_name_clash",
    "unfinished_steps",
]
