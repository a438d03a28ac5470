"""Pure, dialect-neutral decisions of the loop: no I/O."""

from ._tool_names import tool_name_clash

__all__ = ["tool_name_clash"]
