"""A client tool named like a server-side tool is refused, naming the first one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from responseloop.core import tool_name_clash

NAMES = st.sampled_from(["a", "b", "c", "search", "lookup"])


def test_no_clash_is_no_refusal() -> None:
    assert tool_name_clash(["a", "b"], {"c"}) is None
    assert tool_name_clash([], {"c"}) is None


def test_the_first_clashing_tool_is_named() -> None:
    refusal = tool_name_clash(["a", "search", "lookup"], {"lookup", "search"})
    assert refusal is not None
    assert refusal.param == "tools[1].name"
    assert refusal.message == "tool name 'search' is taken by a server-side tool; rename it"
    assert refusal.to_error()["type"] == "invalid_request_error"


@given(st.lists(NAMES, max_size=6), st.frozensets(NAMES))
def test_a_refusal_names_the_first_client_tool_the_server_has(
    client: list[str], server: frozenset[str]
) -> None:
    refusal = tool_name_clash(client, server)
    clashing = [i for i, name in enumerate(client) if name in server]
    if not clashing:
        assert refusal is None
    else:
        assert refusal is not None
        assert refusal.param == f"tools[{clashing[0]}].name"
