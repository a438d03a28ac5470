"""The access policy's parts: key digests, key lists, the TOML access file, and the
policy as an authenticator and a tool resolver."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from responseloop import FunctionTools, RequestContext, StaticToolResolver
from responseloop.abc import ToolResolver
from responseloop.access import (
    AccessFileError,
    AccessPolicy,
    Grant,
    KeyGroup,
    key_digest,
    key_lines,
    policy_from_toml,
)

tools = FunctionTools()


@tools.tool(parameters={"type": "object", "properties": {}})
def ping() -> str:
    """Answers pong."""
    return "pong"


def test_a_key_digest_is_sha256_hex_with_a_prefix() -> None:
    assert key_digest("sk-a") == "sha256:" + hashlib.sha256(b"sk-a").hexdigest()


def test_a_key_list_takes_keys_and_digests_and_skips_comments() -> None:
    digest = key_digest("sk-b")
    text = f"# the team's keys\nsk-a\n\n  {digest}  # b, hashed\n   # nothing\n"
    assert key_lines(text) == [key_digest("sk-a"), digest]


async def test_the_policy_lets_in_only_its_keys_with_their_groups_grant() -> None:
    policy = AccessPolicy(
        [
            KeyGroup("a", [key_digest("sk-a"), key_digest("sk-a2")], models=["m1"]),
            KeyGroup("b", [key_digest("sk-b")]),
        ]
    )
    assert await policy.authenticate("sk-a") == Grant(["m1"])
    assert await policy.authenticate("sk-a2") == Grant(["m1"])
    assert await policy.authenticate("sk-b") == Grant()
    assert await policy.authenticate("sk-c") is None
    assert await policy.authenticate("") is None
    assert await policy.authenticate(None) is None
    assert "sk-" not in repr(policy)
    assert "sha256" not in repr(policy)


async def test_the_policy_resolves_each_groups_tools_for_its_models_only() -> None:
    policy = AccessPolicy(
        [
            KeyGroup("a", [key_digest("sk-a")], StaticToolResolver(tools), ["m1"]),
            KeyGroup("b", [key_digest("sk-b")]),
        ]
    )
    resolver: ToolResolver = policy
    found = await resolver.resolve("sk-a", "m1")
    assert found is not None
    ctx = RequestContext(response_id="resp_1", model="m1")
    assert [schema.name for schema in await found.tools(ctx)] == ["ping"]
    assert await resolver.resolve("sk-a", "m2") is None
    assert await resolver.resolve("sk-b", "m1") is None
    assert await resolver.resolve("sk-c", "m1") is None


def test_a_key_in_two_groups_is_refused() -> None:
    with pytest.raises(ValueError, match="a key is in two groups, 'a' and 'b'"):
        AccessPolicy([KeyGroup("a", [key_digest("k")]), KeyGroup("b", [key_digest("k")])])


@pytest.mark.parametrize("digest", ["sk-plain", "sha256:abc", "sha256:" + "G" * 64])
def test_a_group_holds_only_digests(digest: str) -> None:
    with pytest.raises(ValueError, match=r"group 'g': a digest must be sha256:<64 hex digits>"):
        KeyGroup("g", [digest])


def test_grant_models_is_a_collection() -> None:
    with pytest.raises(TypeError, match="not one string"):
        Grant("m1")
    assert Grant().allows("anything")
    assert not Grant(["m1"]).allows("m2")


def loader(spec: str) -> ToolResolver:
    assert spec == "pkg.mod:tools"
    return StaticToolResolver(tools)


def test_an_access_file_makes_one_group_per_table() -> None:
    digest = key_digest("sk-a")
    groups = policy_from_toml(
        f"""
        # research may use the tools, on two models
        [groups.research]
        keys = ["{digest}"]
        tools = "pkg.mod:tools"
        models = ["m1", "m2"]

        [groups.chat]
        keys = ["{key_digest("sk-b")}"]
        """,
        load_tools=loader,
    )
    assert [(g.name, g.digests, g.models) for g in groups] == [
        ("research", (digest,), frozenset({"m1", "m2"})),
        ("chat", (key_digest("sk-b"),), None),
    ]
    assert isinstance(groups[0].tools, StaticToolResolver)
    assert groups[1].tools is None


DIGEST = key_digest("sk-a")
BAD_FILES = [
    ("[groups.a\n", "not valid TOML"),
    ("", "no [groups.NAME] tables"),
    (f'[other]\nkeys = ["{DIGEST}"]', "unknown top-level keys ['other']"),
    ("groups = 1", "no [groups.NAME] tables"),
    ("[groups]\na = 1", "[groups.a] must be a table"),
    ("[groups.a]\nkeys = []", "[groups.a]: keys must be a non-empty list of strings"),
    ('[groups.a]\nkeys = ["sk-plain"]', "keys must be sha256: digests"),
    ('[groups.a]\nkeys = ["sha256:00"]', "a digest must be sha256:<64 hex digits>"),
    (f'[groups.a]\nkeys = ["{DIGEST}"]\nmodels = "m1"', "models must be a list"),
    (f'[groups.a]\nkeys = ["{DIGEST}"]\ntools = ["x:y"]', "tools must be a module:object"),
    (f'[groups.a]\nkeys = ["{DIGEST}"]\nkey = 1', "unknown keys ['key']"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_a_bad_access_file_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(AccessFileError) as caught:
        policy_from_toml(text, load_tools=loader)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "sk-" not in str(caught.value)


def test_the_access_file_in_the_docs_is_valid() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "production.md").read_text()
    (block,) = re.findall(r"^```toml\n(.*?)^```", page, re.M | re.S)
    specs: list[str] = []

    def record(spec: str) -> ToolResolver:
        specs.append(spec)
        return StaticToolResolver(tools)

    groups = policy_from_toml(block, load_tools=record)
    assert [group.name for group in groups] == ["research", "chat"]
    assert specs == ["myapp.tools:research_tools"]
    AccessPolicy(groups)
