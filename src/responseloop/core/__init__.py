"""Pure, dialect-neutral decisions of the loop: no I/O.

What a run resuming a scope may run again (:func:`unfinished_steps`,
:func:`may_run_on_resume`) and the loop's caps (:func:`exceeds_max_iterations`,
:func:`exceeds_max_tool_calls`). The anyio shell in ``responseloop.loop`` carries them out.
"""

from __future__ import annotations

from ._caps import exceeds_max_iterations, exceeds_max_tool_calls
from ._resume import may_run_on_resume, unfinished_steps

__all__ = [
    "exceeds_max_iterations",
    "exceeds_max_tool_calls",
    "may_run_on_resume",
    "unfinished_steps",
]
