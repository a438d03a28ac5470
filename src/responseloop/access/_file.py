"""Reading API keys and the access file (TOML) into :class:`KeyGroup` values.

The access file::

    # Each group: its keys (digests from `responseloop hash-key`), and optionally the
    # server-side tools (a module:object spec, as --tools takes) and the models it may use.
    [groups.research]
    keys = ["sha256:…", "sha256:…"]
    tools = "myapp.tools:research_tools"
    models = ["llama3.1", "qwen3"]

    [groups.chat]
    keys = ["sha256:…"]          # no tools, any model
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from typing import Any

from ..abc._protocols import ToolResolver
from ._policy import DIGEST_PREFIX, KeyGroup, key_digest

__all__ = ["AccessFileError", "key_lines", "policy_from_toml"]

_GROUP_FIELDS = frozenset({"keys", "tools", "models"})


class AccessFileError(ValueError):
    """A key list or access file that cannot be used; the message is one line and never
    quotes a key."""


def key_lines(text: str) -> list[str]:
    """The digests of a key list: one key or ``sha256:`` digest per line, blank lines
    and ``#`` comments ignored; a plaintext key is hashed here and not kept."""
    digests = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            digests.append(entry if entry.startswith(DIGEST_PREFIX) else key_digest(entry))
    return digests


def policy_from_toml(text: str, *, load_tools: Callable[[str], ToolResolver]) -> list[KeyGroup]:
    """The key groups of an access file (see the module's docstring).

    ``load_tools`` turns a ``module:object`` spec into a resolver (``serve`` passes the
    loader of ``--tools``); what it raises propagates.

    Raises:
        AccessFileError: the text is not TOML, or a group is malformed.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AccessFileError(f"not valid TOML: {exc}") from None
    unknown = set(document) - {"groups"}
    if unknown:
        raise AccessFileError(f"unknown top-level keys {sorted(unknown)} (only [groups.NAME])")
    groups = document.get("groups", {})
    if not isinstance(groups, dict) or not groups:
        raise AccessFileError("no [groups.NAME] tables: it would let no key in")
    return [_group(name, table, load_tools) for name, table in groups.items()]


def _group(name: str, table: Any, load_tools: Callable[[str], ToolResolver]) -> KeyGroup:
    where = f"[groups.{name}]"
    if not isinstance(table, dict):
        raise AccessFileError(f"{where} must be a table")
    unknown = set(table) - _GROUP_FIELDS
    if unknown:
        raise AccessFileError(f"{where}: unknown keys {sorted(unknown)}")
    keys = table.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise AccessFileError(f"{where}: keys must be a non-empty list of strings")
    for key in keys:
        if not key.startswith(DIGEST_PREFIX):
            raise AccessFileError(
                f"{where}: keys must be sha256: digests (responseloop hash-key prints one)"
            )
    models = table.get("models")
    if models is not None and (
        not isinstance(models, list) or not all(isinstance(m, str) for m in models)
    ):
        raise AccessFileError(f"{where}: models must be a list of model names")
    spec = table.get("tools")
    if spec is not None and not isinstance(spec, str):
        raise AccessFileError(f"{where}: tools must be a module:object string")
    tools = load_tools(spec) if spec is not None else None
    try:
        return KeyGroup(name, keys, tools, models)
    except ValueError as exc:
        raise AccessFileError(str(exc)) from None
