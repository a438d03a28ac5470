"""Request-declared MCP tools (``{"type": "mcp", …}``) as values, and the rules over them.

A request may declare MCP servers for the server to run tools on; where each one really
runs is the operator's decision (:class:`~responseloop.tools.DeclaredMcpPolicy`). This
module holds what is pure about them: the declaration as parsed, which listed tools it
allows (``allowed_tools``), which calls wait for the client's approval
(``require_approval``), the listings the conversation holds already (listed once per
conversation), and the approvals a request answers. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ..exceptions import InvalidRequestError
from ._json_types import type_name as _type_name

__all__ = [
    "SECRETS_WITHHELD",
    "ApprovalRule",
    "ApprovedCall",
    "McpDeclaration",
    "ToolFilter",
    "answered_approvals",
    "approval_refusal",
    "approved_calls",
    "conversation_listings",
    "needs_approval",
    "parse_mcp_declaration",
    "ran_approvals",
    "redact_mcp_secrets",
    "tool_allowed",
    "withheld_secrets",
]

_LABEL = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Fields of an ``mcp`` tool that are secrets: sent to its server only, never stored,
# logged or echoed.
_SECRET_FIELDS = ("headers", "authorization")
_REFUSED_FIELDS = {
    "connector_id": "service connectors are OpenAI's; declare the server by server_label",
    "tunnel_id": "Secure MCP Tunnels are OpenAI's; declare the server by server_label",
}


def _names(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen
class ToolFilter:
    """Which tools a filter of ``allowed_tools`` or ``require_approval`` matches: by name
    (``tool_names``) or by the tool's ``readOnlyHint`` annotation (``read_only``); a
    filter with both matches a tool that meets both."""

    tool_names: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    read_only: bool | None = None

    def matches(self, tool: Mapping[str, Any]) -> bool:
        """Whether the listed ``tool`` (``{"name", "annotations", …}``) matches."""
        if self.tool_names is not None and tool.get("name") not in self.tool_names:
            return False
        return self.read_only is None or _read_only(tool) == self.read_only

    @property
    def empty(self) -> bool:
        return self.tool_names is None and self.read_only is None


def _read_only(tool: Mapping[str, Any]) -> bool:
    annotations = tool.get("annotations")
    if not isinstance(annotations, Mapping):
        return False
    hint = annotations.get("readOnlyHint", annotations.get("read_only_hint"))
    return hint is True


@attrs.frozen
class ApprovalRule:
    """``require_approval``: ``always`` and ``never`` are :attr:`default`; a filter object
    names the tools that need approval (``always``) and those that do not (``never``);
    a tool neither names waits for approval, as with OpenAI."""

    default: bool = True
    always: ToolFilter | None = None
    never: ToolFilter | None = None

    def requires(self, tool: Mapping[str, Any]) -> bool:
        if self.never is not None and not self.never.empty and self.never.matches(tool):
            return False
        if self.always is not None and not self.always.empty and self.always.matches(tool):
            return True
        return self.default


@attrs.frozen
class McpDeclaration:
    """One ``mcp`` tool of a request, validated.

    ``headers`` holds the request's ``headers`` and its ``authorization`` (as an
    ``Authorization: Bearer`` header): secrets for that server only, never stored, logged
    or echoed (hidden from ``repr`` and left out of equality). ``param`` is where the
    declaration sits in the request (``tools[2]``), for errors.
    """

    server_label: str
    server_url: str | None = None
    server_description: str | None = None
    allowed: ToolFilter | None = None
    approval: ApprovalRule = ApprovalRule()
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False, eq=False)
    param: str = attrs.field(default="tools", eq=False)


def tool_allowed(declaration: McpDeclaration, tool: Mapping[str, Any]) -> bool:
    """Whether ``allowed_tools`` lets the model see and call the listed ``tool``."""
    return declaration.allowed is None or declaration.allowed.matches(tool)


def needs_approval(declaration: McpDeclaration, tool: Mapping[str, Any]) -> bool:
    """Whether a call of the listed ``tool`` waits for the client's approval."""
    return declaration.approval.requires(tool)


def _string_list(value: object, param: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequestError("must be an array of tool names", param=param)
    return tuple(value)


def _filter(value: object, param: str) -> ToolFilter:
    if isinstance(value, list):
        return ToolFilter(_string_list(value, param))
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"must be an array of tool names or a filter object, got {_type_name(value)}",
            param=param,
        )
    names = value.get("tool_names")
    read_only = value.get("read_only")
    if read_only is not None and not isinstance(read_only, bool):
        raise InvalidRequestError("'read_only' must be a boolean", param=f"{param}.read_only")
    return ToolFilter(
        None if names is None else _string_list(names, f"{param}.tool_names"), read_only
    )


def _approval(value: object, param: str) -> ApprovalRule:
    if value is None or value == "always":
        return ApprovalRule(default=True)
    if value == "never":
        return ApprovalRule(default=False)
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            "'require_approval' must be 'always', 'never' or a filter object", param=param
        )
    always = value.get("always")
    never = value.get("never")
    return ApprovalRule(
        default=True,
        always=None if always is None else _filter(always, f"{param}.always"),
        never=None if never is None else _filter(never, f"{param}.never"),
    )


def _headers(tool: Mapping[str, Any], param: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    given = tool.get("headers")
    if given is not None:
        if not isinstance(given, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in given.items()
        ):
            raise InvalidRequestError(
                "'headers' must be an object of strings", param=f"{param}.headers"
            )
        headers.update(given)
    authorization = tool.get("authorization")
    if authorization is not None:
        if not isinstance(authorization, str) or not authorization:
            raise InvalidRequestError(
                "'authorization' must be a non-empty string", param=f"{param}.authorization"
            )
        headers["Authorization"] = f"Bearer {authorization}"
    return headers


def parse_mcp_declaration(tool: Mapping[str, Any], param: str) -> McpDeclaration:
    """Validate one ``{"type": "mcp", …}`` tool of a request.

    Raises:
        InvalidRequestError: a field is malformed or refused; ``param`` names it.
    """
    label = tool.get("server_label")
    if not isinstance(label, str) or not _LABEL.match(label):
        raise InvalidRequestError(
            "'server_label' is required: letters, digits, '_' and '-', at most 64",
            param=f"{param}.server_label",
        )
    for field, reason in _REFUSED_FIELDS.items():
        if tool.get(field) is not None:
            raise InvalidRequestError(
                f"{field!r} is not supported: {reason}", param=f"{param}.{field}"
            )
    if tool.get("defer_loading") is True:
        raise InvalidRequestError(
            "'defer_loading' is not supported: the server lists MCP tools up front",
            param=f"{param}.defer_loading",
        )
    callers = tool.get("allowed_callers")
    if callers is not None and (not isinstance(callers, list) or "direct" not in callers):
        raise InvalidRequestError(
            "'allowed_callers' must include 'direct': tools are called by the model only",
            param=f"{param}.allowed_callers",
        )
    url = tool.get("server_url")
    if url is not None and (not isinstance(url, str) or not url):
        raise InvalidRequestError(
            "'server_url' must be a non-empty string", param=f"{param}.server_url"
        )
    description = tool.get("server_description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequestError(
            "'server_description' must be a string", param=f"{param}.server_description"
        )
    allowed = tool.get("allowed_tools")
    return McpDeclaration(
        server_label=label,
        server_url=url,
        server_description=description,
        allowed=None if allowed is None else _filter(allowed, f"{param}.allowed_tools"),
        approval=_approval(tool.get("require_approval"), f"{param}.require_approval"),
        headers=_headers(tool, param),
        param=param,
    )


def redact_mcp_secrets(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """``body`` without the secrets of its ``mcp`` tools, as it is stored (``body``
    itself when it declares none, so a body without them is stored untouched)."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not any(_has_secrets(t) for t in tools):
        return body
    redacted = [
        {**{k: v for k, v in t.items() if k not in _SECRET_FIELDS}, SECRETS_WITHHELD: True}
        if _has_secrets(t)
        else t
        for t in tools
    ]
    return {**body, "tools": redacted}


SECRETS_WITHHELD = "secrets_withheld"
"""Marks a stored ``mcp`` tool whose ``headers``/``authorization`` were not stored: a
worker recovering the response cannot reach that server as the request did."""


def _has_secrets(tool: object) -> bool:
    return (
        isinstance(tool, Mapping)
        and tool.get("type") == "mcp"
        and any(tool.get(f) is not None for f in _SECRET_FIELDS)
    )


def withheld_secrets(body: Mapping[str, Any]) -> bool:
    """Whether a stored body's ``mcp`` tools had secrets that were not stored."""
    tools = body.get("tools")
    return isinstance(tools, list) and any(
        isinstance(t, Mapping) and t.get(SECRETS_WITHHELD) is True for t in tools
    )


def conversation_listings(items: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The tools each server listed earlier in the conversation (its last good
    ``mcp_list_tools`` item), by ``server_label``: a later turn reuses them instead of
    listing again."""
    listings: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        if item.get("type") == "mcp_list_tools" and not item.get("error"):
            listings[str(item["server_label"])] = [dict(t) for t in item.get("tools") or []]
    return listings


@attrs.frozen
class ApprovedCall:
    """A call the client approved (an ``mcp_approval_response`` with ``approve: true``
    answering an ``mcp_approval_request`` of the conversation) that has not run yet: it
    runs in this response, before the model is called."""

    approval_request_id: str
    server_label: str
    name: str
    arguments: str


def answered_approvals(items: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The last ``mcp_approval_response`` of the conversation for each approval request,
    by ``approval_request_id``."""
    return {
        str(item["approval_request_id"]): item
        for item in items
        if item.get("type") == "mcp_approval_response"
    }


def ran_approvals(items: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """The approval requests of ``items`` whose call ran already: an ``mcp_call`` item
    carries its ``approval_request_id``."""
    return frozenset(
        str(item["approval_request_id"])
        for item in items
        if item.get("type") == "mcp_call" and item.get("approval_request_id") is not None
    )


def approved_calls(items: Sequence[Mapping[str, Any]]) -> list[ApprovedCall]:
    """The approved calls of the conversation ``items`` still to run, in the order their
    requests were made. A request whose call ran already (an ``mcp_call`` item carrying its
    ``approval_request_id``) is never run again, whoever sends the approval twice."""
    answers = answered_approvals(items)
    ran = ran_approvals(items)
    calls: list[ApprovedCall] = []
    for item in items:
        if item.get("type") != "mcp_approval_request":
            continue
        request_id = str(item["id"])
        answer = answers.get(request_id)
        if answer is None or answer.get("approve") is not True or request_id in ran:
            continue
        calls.append(
            ApprovedCall(
                request_id, str(item["server_label"]), str(item["name"]), str(item["arguments"])
            )
        )
    return calls


def approval_refusal(
    items: Sequence[Mapping[str, Any]],
    labels: frozenset[str],
    param_of: Callable[[int], str],
) -> InvalidRequestError | None:
    """Why the approvals of conversation ``items`` cannot be honoured, or ``None``: an
    ``mcp_approval_response`` answering no ``mcp_approval_request`` before it, or
    approving a call of a server the request does not declare (``labels``); a call runs
    only on a server the request that approves it declares. ``param_of`` names item
    ``i`` in an error."""
    requests: dict[str, Mapping[str, Any]] = {}
    for index, item in enumerate(items):
        kind = item.get("type")
        if kind == "mcp_approval_request":
            requests[str(item["id"])] = item
        elif kind == "mcp_approval_response":
            asked = requests.get(str(item["approval_request_id"]))
            param = f"{param_of(index)}.approval_request_id"
            if asked is None:
                return InvalidRequestError(
                    f"no mcp_approval_request {item['approval_request_id']!r} comes before "
                    "this approval (continue with previous_response_id, or send the request"
                    " item too)",
                    param=param,
                )
            if item.get("approve") is True and asked["server_label"] not in labels:
                return InvalidRequestError(
                    f"this approves a call on MCP server {asked['server_label']!r}, which "
                    "the request does not declare in its tools",
                    param=param,
                )
    return None
