"""Client tools named like server-side tools: refused, whoever runs the loop."""

from __future__ import annotations

from collections.abc import Container, Sequence

from ..exceptions import InvalidRequestError

__all__ = ["tool_name_clash"]


def tool_name_clash(
    client_tool_names: Sequence[str], server_tool_names: Container[str]
) -> InvalidRequestError | None:
    """The refusal of a request whose function tool ``tools[i]`` (``client_tool_names[i]``)
    has the name of a server-side tool, or ``None``.

    A model calling that name could not be told which of the two tools it meant, so the
    request is refused before anything runs; ``param`` names the first clashing tool.
    """
    for index, name in enumerate(client_tool_names):
        if name in server_tool_names:
            return InvalidRequestError(
                f"tool name {name!r} is taken by a server-side tool; rename it",
                param=f"tools[{index}].name",
            )
    return None
