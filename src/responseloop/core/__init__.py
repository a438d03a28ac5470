"""Pure, dialect-neutral decisions of the loop: no I/O."""

from ._steps import STEP_MOVES, check_step_move, refused_step_move, step_move_sources
from ._tool_names import tool_name_clash

__all__ = [
    "STEP_MOVES",
    "check_step_move",
    "refused_step_move",
    "step_move_sources",
    "tool_name_clash",
]
