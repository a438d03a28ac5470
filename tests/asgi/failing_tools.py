"""A tool that raises, quoting its argument, for the log tests of ``responseloop serve``
(``--tools tests.asgi.failing_tools:tools``)."""

from __future__ import annotations

from responseloop import FunctionTools

tools = FunctionTools()


@tools.tool(parameters={"type": "object", "properties": {"secret": {"type": "string"}}})
def explode(secret: str) -> str:
    """Always fails; its exception's message quotes the argument."""
    raise RuntimeError(f"cannot use {secret}")
