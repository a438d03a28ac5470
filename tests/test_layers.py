"""The layers: the pure ones import nothing that does I/O, the facade loads nothing heavy,
and every public name has exactly one public path (DESIGN §2)."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import responseloop

IO_MODULES = (
    "anyio",
    "asyncio",
    "trio",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "h11",
    "tenacity",
    "sqlite3",
    "_sqlite3",
    "socket",
    "_socket",
    "ssl",
    "selectors",
    "psycopg",
    "psycopg_pool",
    "redis",
    "starlette",
    "urllib.request",
    "http.client",
)
HEAVY_FOR_THE_FACADE = ("httpx2", "tenacity", "sqlite3", "starlette", "anyio", "psycopg", "mcp")

PURE_PACKAGES = (
    "responseloop.abc",
    "responseloop.core",
    "responseloop.chat",
    "responseloop.openresponses",
)


def _modules_of(package: str) -> list[str]:
    module = importlib.import_module(package)
    return [package, *(f"{package}.{info.name}" for info in pkgutil.iter_modules(module.__path__))]


PURE_MODULES = sorted(
    [
        "responseloop.exceptions",
        "responseloop.http._retry",
        "responseloop._sse",
        *(name for package in PURE_PACKAGES for name in _modules_of(package)),
    ]
)

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_by(module: str) -> list[str]:
    # A fresh interpreter, without stubbing anything: this one already has anyio loaded.
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, module], capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded


def _offenders(loaded: list[str], banned: tuple[str, ...]) -> list[str]:
    return [name for name in loaded if any(name == b or name.startswith(b + ".") for b in banned)]


def test_the_pure_module_list_covers_the_package() -> None:
    assert "responseloop.openresponses._request" in PURE_MODULES
    assert "responseloop.openresponses._assembly" in PURE_MODULES
    assert "responseloop.chat._transition" in PURE_MODULES
    assert "responseloop.abc._steps" in PURE_MODULES


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_no_io(module: str) -> None:
    loaded = _loaded_by(module)
    offenders = _offenders(loaded, IO_MODULES)
    assert not offenders, f"{module} imports I/O modules: {offenders}"
    assert module in loaded


def test_the_facade_loads_no_client_driver_or_framework() -> None:
    loaded = _loaded_by("responseloop")
    assert _offenders(loaded, HEAVY_FOR_THE_FACADE) == []
    ours = {name for name in loaded if name.startswith("responseloop.")}
    assert ours == {"responseloop._lazy", "responseloop._version"}


def public_modules() -> list[types.ModuleType]:
    names = ["responseloop"]
    for info in pkgutil.walk_packages(responseloop.__path__, "responseloop."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return [importlib.import_module(name) for name in names]


def test_every_public_module_has_a_sorted_all_of_real_names() -> None:
    for module in public_modules():
        exported = module.__all__
        assert exported == sorted(exported, key=isort_style), module.__name__
        for name in exported:
            assert hasattr(module, name), f"{module.__name__}.{name} is in __all__ but missing"


def test_every_public_name_has_exactly_one_public_path() -> None:
    seen: dict[str, str] = {}
    for module in public_modules():
        for name in module.__all__:
            assert name not in seen, f"{name} is exported by {seen[name]} and {module.__name__}"
            seen[name] = module.__name__


def test_every_layer_exports_what_it_defines() -> None:
    # A public module's own public classes and functions are in its __all__, or in the
    # __all__ of the one module that exports them.
    exported = {name for module in public_modules() for name in module.__all__}
    for module in public_modules():
        for name, value in vars(module).items():
            if name.startswith("_") or isinstance(value, types.ModuleType):
                continue
            if isinstance(value, type | types.FunctionType) and value.__module__ == module.__name__:
                assert name in exported, f"{module.__name__}.{name} is exported by no layer"


def test_the_facade_holds_about_twenty_first_day_names() -> None:
    assert len(responseloop.__all__) <= 20
    assert set(dir(responseloop)) >= set(responseloop.__all__)


def test_unknown_facade_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = responseloop.NoSuchThing  # type: ignore[attr-defined]


def isort_style(name: str) -> tuple[int, str]:
    """The order ruff (RUF022) keeps ``__all__`` in: CONSTANTS, Classes, then the rest."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


@pytest.mark.parametrize(
    "module",
    ["responseloop.http._httpx", "responseloop.http.aiohttp", "responseloop.testing._fakes"],
)
def test_the_http_side_knows_no_upstream_dialect(module: str) -> None:
    """An HttpClient moves bytes and events: the format is the dialect's (``abc``'s
    ``UpstreamDialect``), so the clients and the scripted model load no dialect."""
    loaded = _loaded_by(module)
    assert module in loaded
    assert _offenders(loaded, ("responseloop.chat", "responseloop.openresponses")) == []


ABC_VALUE_MODULES = [
    "_json",
    "_known_texts",
    "_steps",
    "_tools",
    "_config",
    "_http",
    "_events",
    "_records",
]


@pytest.mark.parametrize("name", ABC_VALUE_MODULES)
def test_the_abc_values_know_nothing_of_the_protocols(name: str) -> None:
    # A frozen value holding a live Protocol (AgentSpec once held a ToolExecutor) made the
    # two modules import each other; no import of it is left, not even for type checking.
    module = importlib.import_module(f"responseloop.abc.{name}")
    tree = ast.parse(inspect.getsource(module))
    imported = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    ]
    assert not [name for name in imported if "_protocols" in name or "_dialect" in name]


def test_every_abc_value_module_is_checked() -> None:
    found = sorted(
        info.name
        for info in pkgutil.iter_modules(importlib.import_module("responseloop.abc").__path__)
    )
    assert found == sorted([*ABC_VALUE_MODULES, "_dialect", "_protocols"])


PURE_LAYERS = {"abc", "core", "chat", "openresponses", "exceptions", "_sse"}


def _layer_imports() -> dict[str, set[str]]:
    """Which layer (first package under responseloop) imports which, at import time: only
    module-level imports count (not those under TYPE_CHECKING or inside functions)."""
    root = Path(responseloop.__path__[0])
    edges: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        is_package = path.name == "__init__.py"
        module = parts[:-1] if is_package else parts
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = module if is_package else module[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = (*base, *(node.module.split(".") if node.module else ()))
            source_layer = module[1] if len(module) > 1 else None
            target_layer = target[1] if len(target) > 1 else None
            if source_layer and target_layer and source_layer != target_layer:
                edges.setdefault(source_layer, set()).add(target_layer)
    return edges


def test_the_layers_import_each_other_without_cycles() -> None:
    edges = _layer_imports()
    assert edges["chat"] >= {"openresponses"}  # the graph is read, not empty
    for start in edges:
        seen: set[str] = set()
        todo = list(edges[start])
        while todo:
            layer = todo.pop()
            assert layer != start, f"{start} imports itself back through {sorted(seen)}"
            if layer not in seen:
                seen.add(layer)
                todo.extend(edges.get(layer, ()))


def test_the_pure_layers_import_only_pure_layers() -> None:
    edges = _layer_imports()
    for layer in PURE_LAYERS:
        assert edges.get(layer, set()) <= PURE_LAYERS, f"{layer}: {edges.get(layer)}"


# What private modules share with the rest of the package and do not offer users; a name
# added to a private module's __all__ must be exported by a layer or be listed here.
INTERNAL = {
    "responseloop.abc._known_texts": {"remember_text", "take_text"},
    "responseloop.abc._json": {"parse_json"},
    "responseloop._closing": {"AsyncClosing"},
    "responseloop._ids": {"random_id"},
    "responseloop._logs": {"LOG_FORMATS", "LOG_LEVELS", "configure_logging"},
    "responseloop._settings": {"Option", "SettingError", "add_options", "resolve"},
    "responseloop._sse": {"DEFAULT_MAX_EVENT_BYTES", "DONE_FRAME", "SSEDecoder"},
    "responseloop.adapters._background": {"replayed_events"},
    "responseloop.adapters._body": {"BodyTooLarge", "parse_body", "read_capped", "unstorable"},
    "responseloop.adapters._errors": {"error_body", "exception_body", "failure_status"},
    "responseloop.adapters._models": {"MODELS_TTL", "ModelsUnavailable", "UpstreamModels"},
    "responseloop.adapters._routes": {
        "MAX_BODY_BYTES",
        "TERMINAL_EVENTS",
        "BackgroundRunner",
        "EventFrames",
        "JsonReply",
        "ResponsesRoutes",
        "StreamReply",
        "bearer_key",
        "ended_here",
        "event_mapper",
        "pushed_run",
        "streamed_run",
    },
    "responseloop.adapters._websocket": {
        "CONNECTION_LIMIT_SECONDS",
        "QueuedMessages",
        "ResponsesSocket",
        "encode_message",
        "socket_error",
    },
    "responseloop.adapters._event_log": {
        "EventLogWriter",
        "error_event",
        "follow_log",
        "last_logged",
        "logged_events",
        "stream_end_event",
    },
    "responseloop.chat._stream": {"DONE"},
    "responseloop.chat._transition": {"first_choice", "model_message", "tool_calls_of"},
    "responseloop.chat._translate": {"MAX_UPSTREAM_CALL_ID", "upstream_call_id"},
    "responseloop.core._tool_outputs": {"steps_by_call_id", "tool_output_text"},
    "responseloop.http._calls": {"RetryingCalls"},
    "responseloop.http._retry": {"RETRYABLE_STATUSES"},
    "responseloop.loop._concurrency": {"deadline_scope", "first_error"},
    "responseloop.loop._emitter": {"Emitter"},
    "responseloop.loop._lease": {"renewing_lease"},
    "responseloop.loop._scope": {"Run", "ScopeFrame"},
    "responseloop.observe._observer": {"LifecycleDispatch", "observing", "outcome_of"},
    "responseloop.openresponses._assembly": {"custom_input", "output_items"},
    "responseloop.openresponses._dialects": {"default_dialect"},
    "responseloop.openresponses._json_types": {"type_name"},
    "responseloop.openresponses._mcp": {
        "SECRETS_WITHHELD",
        "ApprovedCall",
        "answered_approvals",
        "approval_refusal",
        "approved_calls",
        "conversation_listings",
        "parse_mcp_declaration",
        "ran_approvals",
        "redact_mcp_secrets",
        "withheld_secrets",
    },
    "responseloop.openresponses._sealing": {
        "SEAL_VERSION",
        "SealError",
        "open_compaction",
        "seal_compaction",
        "open_reasoning",
        "reasoning_text",
        "require_sealing",
        "seal_reasoning",
    },
    "responseloop.core._compaction": {
        "compacted_window",
        "context_tokens",
        "is_summary_message",
        "summary_message",
        "summary_of",
    },
    "responseloop.openresponses._item_kinds": {
        "CALL_ID_PREFIX",
        "OUTPUT_ITEM_KINDS",
        "OutputItemKind",
        "call_id",
        "in_progress",
        "item_id",
    },
    "responseloop.openresponses._items": {"input_items", "listed_item"},
    "responseloop.openresponses._references": {
        "MAX_REFERENCED_RESPONSES",
        "ModelTurns",
        "ReferableItems",
        "model_turns",
        "referable_items",
        "replayed_ids",
        "resolve_references",
        "responses_to_read",
        "restore_replayed",
        "too_many_responses",
        "unresolved_references",
    },
    "responseloop.openresponses._request": {"history_tools", "parse_metadata"},
    "responseloop.openresponses._continuation": {"continue_from"},
    "responseloop._conversations": {
        "ConversationItemNotFound",
        "ConversationTurn",
        "MAX_ADDED_ITEMS",
    },
    "responseloop.stores._codec": {"decode", "encode", "encode_step_update"},
    "responseloop.tools._composite": {"known_tool_names"},
    "responseloop.tools._schema": {
        "ArgumentModel",
        "check_arguments",
        "context_parameter",
        "parse_docstring",
        "to_json",
    },
}


def _private_modules() -> list[types.ModuleType]:
    names = [
        info.name
        for info in pkgutil.walk_packages(responseloop.__path__, "responseloop.")
        if any(part.startswith("_") for part in info.name.split(".")[1:])
        and not info.name.endswith("__main__")  # importing it runs the command
    ]
    return [importlib.import_module(name) for name in names]


def test_every_private_name_shared_is_exported_by_a_layer_or_listed_as_internal() -> None:
    exported = {name for module in public_modules() for name in module.__all__}
    for module in _private_modules():
        shared = set(getattr(module, "__all__", ()))
        internal = INTERNAL.get(module.__name__, set())
        assert shared - exported == internal, module.__name__
