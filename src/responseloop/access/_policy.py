"""The authenticator protocol, what it grants, and the key-digest policy behind ``serve``."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Protocol

import attrs

from ..abc._protocols import ToolExecutor, ToolResolver

__all__ = ["AccessPolicy", "Authenticator", "Grant", "KeyGroup", "key_digest"]

DIGEST_PREFIX = "sha256:"


def key_digest(api_key: str) -> str:
    """The stored form of an API key, ``sha256:<64 hex digits>`` (what ``responseloop
    hash-key`` prints), so key files need not hold plaintext keys."""
    return DIGEST_PREFIX + hashlib.sha256(api_key.encode()).hexdigest()


def _models(value: Iterable[str] | None) -> frozenset[str] | None:
    if isinstance(value, str):
        raise TypeError("models= takes a collection of model names, not one string")
    return frozenset(value) if value is not None else None


def _digests(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class Grant:
    """What an authenticated caller may do: the ``models`` it may use (``None``: any).

    A request for another model is answered 404 ``model_not_found``, as OpenAI answers a
    model a key has no access to, and ``GET /v1/models`` lists only these.
    """

    models: frozenset[str] | None = attrs.field(default=None, converter=_models)

    def allows(self, model: str) -> bool:
        """Whether ``model`` may be used."""
        return self.models is None or model in self.models


class Authenticator(Protocol):
    """Protocol: decides whether a bearer key may call the server.

    The ASGI app (``create_app(authenticator=...)``) asks it once per ``/v1`` request,
    before anything is read or stored; ``None`` (a refusal) is a 401 in OpenAI's shape
    (``code: invalid_api_key``). Without an authenticator the app is open, and the key
    only partitions stored responses. It must never log or store the key.
    """

    async def authenticate(self, api_key: str | None) -> Grant | None:
        """The caller's grant, or ``None`` to refuse it (``api_key`` is ``None`` when the
        request has no ``Authorization: Bearer`` header)."""
        ...


@attrs.frozen
class KeyGroup:
    """Keys (as :func:`key_digest` digests) that share server-side tools and models.

    Attributes:
        name: how errors and the docs name the group (never a key).
        digests: the group's keys, each ``sha256:…``.
        tools: resolves the group's server-side tools (``None``: none).
        models: the models the group may use (``None``: any).
    """

    name: str
    digests: tuple[str, ...] = attrs.field(converter=_digests)
    tools: ToolResolver | None = attrs.field(default=None, eq=False)
    models: frozenset[str] | None = attrs.field(default=None, converter=_models)

    @digests.validator
    def _check(self, _attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
        for digest in value:
            hex_part = digest.removeprefix(DIGEST_PREFIX)
            if (
                not digest.startswith(DIGEST_PREFIX)
                or len(hex_part) != 64
                or hex_part.strip("0123456789abcdef")
            ):
                raise ValueError(f"group {self.name!r}: a digest must be sha256:<64 hex digits>")


class AccessPolicy:
    """An :class:`Authenticator` and a :class:`~responseloop.abc.ToolResolver` over key
    groups: a key is let in when its digest is in a group, and gets that group's tools
    and models; any other key, or none, is refused.

    The digest of the presented key is compared with *every* stored one with
    :func:`hmac.compare_digest`, so the time taken tells nothing of which digest, if any,
    matched. A digest in two groups is refused when the policy is built (it would be
    ambiguous which tools it gets).

    Raises:
        ValueError: a digest is in more than one group.
    """

    def __init__(self, groups: Iterable[KeyGroup]) -> None:
        self.groups = tuple(groups)
        entries: list[tuple[bytes, KeyGroup]] = []
        seen: dict[str, str] = {}
        for group in self.groups:
            for digest in group.digests:
                if digest in seen and seen[digest] != group.name:
                    raise ValueError(f"a key is in two groups, {seen[digest]!r} and {group.name!r}")
                seen[digest] = group.name
                entries.append((digest.encode(), group))
        self._entries = entries

    def __repr__(self) -> str:
        return f"<AccessPolicy {len(self._entries)} keys in {len(self.groups)} groups>"

    def _group_of(self, api_key: str | None) -> KeyGroup | None:
        if not api_key:
            return None
        presented = key_digest(api_key).encode()
        found: KeyGroup | None = None
        for digest, group in self._entries:  # every entry, matched or not: constant time
            if hmac.compare_digest(digest, presented):
                found = group
        return found

    async def authenticate(self, api_key: str | None) -> Grant | None:
        """The grant of the key's group, or ``None`` for a key in none."""
        group = self._group_of(api_key)
        return None if group is None else Grant(group.models)

    async def resolve(self, api_key: str | None, model: str) -> ToolExecutor | None:
        """The key's group's tools for ``model`` (none for a model it may not use)."""
        group = self._group_of(api_key)
        if group is None or group.tools is None:
            return None
        if group.models is not None and model not in group.models:
            return None
        return await group.tools.resolve(api_key, model)
