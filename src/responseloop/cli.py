"""The ``responseloop`` command: ``responseloop serve`` runs the ASGI app with uvicorn.

::

    responseloop serve --upstream http://localhost:8000/v1 --upstream-key-env UPSTREAM_KEY \\
        --tools myapp.tools:tools --store sqlite:responses.db --port 8080

Every option is also a ``RESPONSELOOP_*`` environment variable and a key of a TOML file
(``--config``), one table (:data:`SERVE_OPTIONS`) declaring all three; the command line wins
over the environment, which wins over the file.

Every failure to start (a malformed option, a bad ``--tools`` spec, a store that cannot be
opened, a port in use, an upstream that cannot be reached) is one line on stderr and exit
status 2 (bad arguments) or 1 (cannot start).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import math
import os
import re
import secrets
import socket
import sys
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import anyio
import attrs

from ._logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from ._settings import Option, SettingError, add_options, resolve
from ._version import __version__
from .abc._config import LoopConfig, UpstreamTarget
from .abc._protocols import ResponseStore, ToolResolver
from .http._retry import RetryPolicy
from .openresponses import WireOptions

if TYPE_CHECKING:
    from .access import Authenticator
    from .observe.prometheus import PrometheusMetrics
    from .tools.mcp import DeclaredMcpPolicy

__all__ = [
    "CliError",
    "access_policy",
    "declared_mcp_policy",
    "hash_key",
    "load_tools",
    "main",
    "mcp_policy_from_toml",
    "metrics_observer",
    "open_store",
    "reasoning_options",
]

logger = logging.getLogger("responseloop.cli")


class CliError(Exception):
    """A reason the command cannot run, told to the user as one line."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def load_tools(spec: str) -> ToolResolver:
    """The tool resolver named by ``module:object``: a resolver (has ``resolve``) is used
    as is; a tool executor (has ``tools`` and ``execute``) is offered to every caller.

    Raises:
        CliError: the spec is malformed, the module or object is missing, or the object is
            neither a resolver nor an executor.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"--tools must be module:object, got {spec!r}", exit_code=2)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"--tools: cannot import {module_name!r}: {exc}", exit_code=2) from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(
                f"--tools: {module_name!r} has no attribute {attribute!r}", exit_code=2
            ) from None
    if callable(getattr(target, "resolve", None)):
        resolver: ToolResolver = target
        return resolver
    if callable(getattr(target, "tools", None)) and callable(getattr(target, "execute", None)):
        from .tools._resolvers import StaticToolResolver

        return StaticToolResolver(target)
    raise CliError(
        f"--tools: {spec!r} is a {type(target).__name__}, not a ToolExecutor "
        "(e.g. FunctionTools) or a ToolResolver",
        exit_code=2,
    )


@contextlib.asynccontextmanager
async def open_store(
    spec: str, *, postgres_schema: str = "responseloop"
) -> AsyncIterator[ResponseStore]:
    """Open the store named by ``memory``, ``sqlite:PATH`` or ``postgres://…`` (also
    ``postgresql://…``, whose tables live in ``postgres_schema``), checking it can be used
    before the server starts.

    Raises:
        CliError: the spec is not one of those, or the store cannot be opened.
    """
    from .stores._memory import InMemoryStore
    from .stores.postgres import PostgresStore
    from .stores.sqlite import SQLiteStore

    if spec == "memory":
        yield InMemoryStore()
        return
    store: SQLiteStore | PostgresStore
    if spec.startswith("sqlite:"):
        path = spec.removeprefix("sqlite:")
        if not path:
            raise CliError("--store sqlite: needs a path (sqlite:responses.db)", exit_code=2)
        store = SQLiteStore(path)
        opening = _touch_sqlite(store)
    elif spec.startswith(("postgres://", "postgresql://")):
        try:
            store = PostgresStore.from_url(spec, schema=postgres_schema, timeout=10.0)
        except ValueError as exc:
            raise CliError(f"--postgres-schema: {exc}", exit_code=2) from exc
        opening = store.open()
    else:
        raise CliError(
            f"--store must be memory, sqlite:PATH or postgres://…, got {_redacted(spec)!r}",
            exit_code=2,
        )
    try:
        await opening
    except Exception as exc:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await store.aclose()
        raise CliError(
            f"cannot open the store {_redacted(spec)}: {_redacted(str(exc), spec)}"
        ) from exc
    try:
        yield store
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()


async def _touch_sqlite(store: Any) -> None:
    # The schema is made on first use: a lookup makes it now, so a bad path fails here.
    from .exceptions import ResponseNotFound

    with contextlib.suppress(ResponseNotFound):
        await store.get_response("resp_startup_check")


# A URL's userinfo (user:password@), and a password=… parameter of a URL's query or of a
# libpq key=value DSN (quoted or not): the forms a DSN carries its secret in.
_USERINFO = re.compile(r"(?<=://)[^/?#@\s]*@")
_PASSWORD_PARAM = re.compile(
    r"(?i)((?:^|[?&;\s])(?:ssl)?pass(?:word|file)?\s*=\s*)(?!\s*…)('(?:[^'\\]|\\.)*'|[^&;\s]*)"
)


def _secrets_of(spec: str) -> list[str]:
    """The literal secrets a store spec holds, each as written, percent-decoded and
    percent-encoded."""
    found: list[str] = []
    parts = urllib.parse.urlsplit(spec) if "://" in spec else None
    if parts is not None and parts.password:
        found.append(parts.password)
    for match in _PASSWORD_PARAM.finditer(spec):
        found.append(match.group(2).strip("'"))
    plain = {*found, *(urllib.parse.unquote(secret) for secret in found)}
    quoted = {urllib.parse.quote(secret, safe="") for secret in plain}
    return [secret for secret in plain | quoted if len(secret) >= 3]


def _redacted(text: str, spec: str = "") -> str:
    """``text`` with every DSN secret replaced by ``…``: userinfo, ``password=`` in a query
    or a key=value DSN, and (when it comes from ``spec``) the secret's own text anywhere,
    such as a driver's error quoting it."""
    text = _USERINFO.sub("…@", text)
    text = _PASSWORD_PARAM.sub(lambda m: f"{m.group(1)}…", text)
    for secret in sorted(_secrets_of(spec), key=len, reverse=True):
        text = text.replace(secret, "…")
    return text


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns TCP_NODELAY on for the connections it accepts only
    # when the socket says it is TCP; without it every small reply waits ~40 ms for the
    # client's delayed ACK (Nagle). Set on the listener too, which accepted sockets inherit.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "the port is in use" if exc.errno in (98, 48, 10048) else exc.strerror
        raise CliError(f"cannot listen on {host}:{port}: {reason}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


# The library's own defaults (adapters._routes.MAX_BODY_BYTES, http.DEFAULT_MAX_REPLY_BYTES;
# a test holds them equal), spelt here so that --help needs neither httpx2 nor the service.
MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_REPLY_BYTES = 32 * 1024 * 1024
# adapters._websocket.CONNECTION_LIMIT_SECONDS (a test holds them equal): the spec's hour.
CONNECTION_LIMIT_SECONDS = 60 * 60.0
# Shorter than the upstream call's overall 600 s: a hung upstream fails its step sooner.
DEFAULT_UPSTREAM_REPLY_TIMEOUT = 300.0
# HttpxClient's own defaults (a test holds them equal).
DEFAULT_UPSTREAM_TIMEOUT = 600.0
DEFAULT_UPSTREAM_CONNECT_TIMEOUT = 10.0


def _whole(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None
    if value < minimum:
        raise ValueError(f"must be at least {minimum}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _count(text: str) -> int:
    return _whole(text, 0)


def _count_or_none(text: str) -> int | None:
    return None if text.lower() == "none" else _whole(text, 0)


def _bytes_or_none(text: str) -> int | None:
    return None if text.lower() == "none" else _whole(text, 1)


def _number(text: str, minimum: float, *, inclusive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < minimum or (not inclusive and value == minimum):
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise ValueError(f"must be a finite number {bound}, got {text}")
    return value


def _port(text: str) -> int:
    port = _whole(text, 0)
    if port > 65535:
        raise ValueError(f"not a port: {port}")
    return port


def _seconds(text: str) -> float:
    return _number(text, 0, inclusive=False)


def _seconds_or_none(text: str) -> float | None:
    return None if text.lower() == "none" else _seconds(text)


def _non_negative(text: str) -> float:
    return _number(text, 0, inclusive=True)


def _multiplier(text: str) -> float:
    return _number(text, 1, inclusive=True)


def _statuses(text: str) -> frozenset[int]:
    statuses = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        status = _whole(part, 100)
        if status > 599:
            raise ValueError(f"not an HTTP status: {status}")
        statuses.add(status)
    return frozenset(statuses)


def _upstream_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"must be an http:// or https:// URL with a host, e.g. http://localhost:8000/v1; "
            f"got {_redacted(text)!r}"
        )
    return text


def _config_default(cls: type, name: str) -> Any:
    return getattr(attrs.fields(cls), name).default


def _loop(name: str, help: str, parse: Callable[[str], Any] | None, **more: Any) -> Option:
    """A LoopConfig field as an option: its default is the library's."""
    return Option(
        name, help, parse, default=_config_default(LoopConfig, name.replace("-", "_")), **more
    )


def _retry_key(field: str) -> str:
    """The setting of a RetryPolicy field: ``retry_`` and the field's name, said once."""
    return field if field.startswith("retry_") else f"retry_{field}"


def _retry(field: str, help: str, parse: Callable[[str], Any], **more: Any) -> Option:
    """A RetryPolicy field as a ``retry-…`` option: its default is the library's."""
    default = _config_default(RetryPolicy, field)
    return Option(_retry_key(field).replace("_", "-"), help, parse, default=default, **more)


_ALL_STATUSES = ",".join(str(s) for s in sorted(_config_default(RetryPolicy, "retry_statuses")))

SERVE_OPTIONS: tuple[Option, ...] = (
    Option(
        "config", "a TOML file of these settings (keys as the flags, - as _)", str, metavar="PATH"
    ),
    # Upstream
    Option(
        "upstream",
        "the chat-completions base URL, e.g. http://host/v1",
        _upstream_url,
        metavar="URL",
        required=True,
    ),
    Option(
        "upstream-key-env", "the environment variable holding the upstream's API key", metavar="VAR"
    ),
    Option(
        "upstream-check",
        "reach the upstream once at start (GET {upstream}/models; any "
        "HTTP answer counts) and refuse to start when it cannot be reached",
        None,
        default=True,
    ),
    Option(
        "upstream-client",
        "the HTTP client upstream calls go through: httpx (httpx2) or aiohttp "
        "(the aiohttp extra; less CPU per call, and serve always runs on asyncio)",
        default="httpx",
        choices=("httpx", "aiohttp"),
    ),
    Option(
        "upstream-timeout",
        "the longest one upstream call may take, retries and their waits included",
        _seconds_or_none,
        default=DEFAULT_UPSTREAM_TIMEOUT,
        metavar="SECONDS|none",
    ),
    Option(
        "upstream-connect-timeout",
        "the longest connecting to the upstream may take",
        _seconds,
        default=DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
        metavar="SECONDS",
    ),
    Option(
        "upstream-reply-timeout",
        "the longest one upstream reply may take, from the "
        "request to its last byte, streamed or not; past it the step fails",
        _seconds_or_none,
        default=DEFAULT_UPSTREAM_REPLY_TIMEOUT,
        metavar="SECONDS|none",
    ),
    Option(
        "max-upstream-reply-bytes",
        "the most bytes of one upstream reply, streamed or not; past it the step fails",
        _positive_int,
        default=DEFAULT_MAX_REPLY_BYTES,
        metavar="BYTES",
        shown_default=f"{DEFAULT_MAX_REPLY_BYTES}, 32 MiB",
    ),
    _retry(
        "attempts",
        "upstream tries in all, the first included (1: no retries)",
        _positive_int,
        metavar="N",
    ),
    _retry("initial_backoff", "seconds before the first retry", _non_negative, metavar="SECONDS"),
    _retry(
        "max_backoff", "the longest computed wait between tries", _non_negative, metavar="SECONDS"
    ),
    _retry(
        "multiplier",
        "how much each wait grows over the previous one",
        _multiplier,
        metavar="FACTOR",
    ),
    _retry("jitter", "the most random seconds added to a wait", _non_negative, metavar="SECONDS"),
    _retry(
        "max_retry_after",
        "the longest Retry-After the server waits for; a longer one fails the call at once",
        _non_negative,
        metavar="SECONDS",
    ),
    _retry(
        "retry_statuses",
        "the upstream statuses that are retried",
        _statuses,
        metavar="LIST",
        shown_default=_ALL_STATUSES,
    ),
    # Tools and store
    Option(
        "tools",
        "server-side tools: a ToolExecutor or resolver (importable from the current directory)",
        metavar="MODULE:OBJECT",
    ),
    Option(
        "mcp-servers",
        "a TOML file of the MCP servers requests may declare (tools of type mcp): the "
        "operator's server of each server_label, and the server_url prefixes requests may "
        "name themselves (docs/tools.md; extra: responseloop[mcp]); unset: none",
        metavar="PATH",
    ),
    Option(
        "store",
        "memory, sqlite:PATH or postgres://user@host/db (give a password by "
        "RESPONSELOOP_STORE or the file, not on the command line)",
        default="memory",
        metavar="SPEC",
    ),
    Option(
        "postgres-schema",
        "the PostgreSQL schema of a postgres:// store",
        default="responseloop",
        metavar="NAME",
    ),
    # Server
    Option("host", "the address to listen on", default="127.0.0.1"),
    Option("port", "the port to listen on (0: any free one)", _port, default=8080),
    Option(
        "graceful-timeout",
        "on shutdown (SIGTERM, SIGINT), how long running responses may finish; the rest "
        "are handed over (their leases released) for another replica, or this one after "
        "its restart, to finish",
        _seconds,
        default=10.0,
        metavar="SECONDS",
    ),
    Option(
        "sweep-interval",
        "seconds between two looks for responses whose worker died, which this server "
        "then finishes (0: never)",
        _non_negative,
        default=None,
        metavar="SECONDS",
        shown_default="half the lease",
    ),
    Option(
        "cancel-poll-interval",
        "seconds between two looks for cancels asked on other replicas of responses "
        "running here (0: never)",
        _non_negative,
        default=1.0,
        metavar="SECONDS",
    ),
    # Access
    Option(
        "api-keys-file",
        "the API keys callers must present, one key or sha256: digest a line (# comments); "
        "also RESPONSELOOP_API_KEYS, comma-separated (unset: open to any key)",
        metavar="PATH",
    ),
    Option(
        "access-file",
        "a TOML file giving key groups their tools and models (docs/production.md)",
        metavar="PATH",
    ),
    Option(
        "metrics",
        "serve Prometheus metrics at /metrics (extra: responseloop[metrics])",
        None,
        default=False,
    ),
    Option(
        "max-body-bytes",
        "the largest request body; a longer one is refused with 413 while it is read",
        _positive_int,
        default=MAX_BODY_BYTES,
        metavar="BYTES",
        shown_default=f"{MAX_BODY_BYTES}, 16 MiB",
    ),
    Option(
        "websocket-connection-limit",
        "how long a WebSocket connection to /v1/responses lasts; then it gets the error "
        "websocket_connection_limit_reached and is closed",
        _seconds,
        default=CONNECTION_LIMIT_SECONDS,
        metavar="SECONDS",
        shown_default="3600, 60 minutes",
    ),
    Option(
        "log-level",
        "the level of the responseloop and uvicorn loggers (exception "
        "messages and tracebacks only at debug)",
        default="info",
        choices=LOG_LEVELS,
    ),
    Option(
        "log-format",
        "text, or json: one object per line (time, level, logger, message, response_id, …)",
        default="text",
        choices=LOG_FORMATS,
    ),
    # The loop (LoopConfig)
    _loop(
        "max-iterations",
        "the most model calls of one scope (the top level or a sub-agent)",
        _positive_int,
        metavar="N",
    ),
    _loop("max-depth", "the deepest sub-agent nesting", _count, metavar="N"),
    _loop(
        "max-tool-calls",
        "the most server-side tool calls of a response",
        _count_or_none,
        metavar="N|none",
    ),
    _loop(
        "step-timeout",
        "the longest one step (a model call or a tool call) may take",
        _seconds_or_none,
        metavar="SECONDS|none",
    ),
    _loop(
        "response-timeout",
        "the longest a whole response may run",
        _seconds_or_none,
        metavar="SECONDS|none",
    ),
    _loop(
        "tool-errors",
        "a failed tool: feed the error back to the model, or fail the response",
        str,
        choices=("feed_back", "fail"),
    ),
    _loop(
        "unknown-tools",
        "a call of a tool nobody offers: feed back, or fail",
        str,
        choices=("feed_back", "fail"),
    ),
    _loop(
        "refire-model-calls", "on resume, re-send a model call a dead worker left in flight", None
    ),
    _loop(
        "refire-idempotent-tools",
        "on resume, re-run an idempotent tool a dead worker left in flight",
        None,
    ),
    _loop(
        "event-buffer", "stream events that may wait for a slow reader", _positive_int, metavar="N"
    ),
    _loop(
        "max-tool-output-bytes",
        "the largest result of one tool",
        _bytes_or_none,
        metavar="BYTES|none",
    ),
    _loop(
        "tool-exception-detail",
        "what a tool's exception tells the model: its type, or its message too",
        str,
        choices=("type", "message"),
    ),
    _loop(
        "lease-seconds",
        "how long a run's lease on its response lasts unrenewed (another "
        "worker may take over after it)",
        _seconds,
        metavar="SECONDS",
    ),
    # The wire
    Option(
        "hosted-tools",
        "a declared hosted tool (web_search, …) the server does not run: "
        "skip it (not offered to the model) or refuse the request (400)",
        default="skip",
        choices=("skip", "refuse"),
    ),
    Option(
        "server-tool-items",
        "how a server-side tool call appears in output: one "
        "mcp_call item, or function_call + function_call_output (0.1's shape)",
        default="mcp_call",
        choices=("mcp_call", "function_call"),
    ),
    Option(
        "event-names",
        "the names of the reasoning text events: openai "
        "(response.reasoning_text.*, what the openai SDKs parse) or openresponses (the "
        "spec's response.reasoning.*)",
        default="openai",
        choices=("openai", "openresponses"),
    ),
    Option(
        "reasoning-key-env",
        "the environment variable holding the secret that seals "
        "reasoning.encrypted_content (unset: a random key of this process)",
        metavar="VAR",
    ),
    Option(
        "replay-reasoning-as",
        "the assistant-message field that carries reasoning sent "
        "back to the upstream (none sends none)",
        default="reasoning_content",
        metavar="FIELD|none",
    ),
    Option(
        "compaction-prompt",
        "what a compaction asks the upstream model after the conversation (default: "
        "responseloop.core.DEFAULT_COMPACTION_PROMPT); compaction summaries are sealed "
        "with the --reasoning-key-env secret",
        str,
        metavar="TEXT",
    ),
)
"""Every ``serve`` setting: its flag, ``RESPONSELOOP_*`` variable and TOML key."""

_LOOP_FIELDS = tuple(field.name for field in attrs.fields(LoopConfig))
_RETRY_FIELDS = tuple(field.name for field in attrs.fields(RetryPolicy))

_PRECEDENCE = (
    "Every option may also be set by its environment variable (shown with it) or by a key "
    "of the TOML file --config names (the flag's name, - as _); the command line wins over "
    "the environment, which wins over the file, which wins over the default."
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other refusal to start
    (argparse's own prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see {self.prog} --help)", exit_code=2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="responseloop",
        description="The server-side agent loop of the OpenAI Responses API.",
    )
    parser.add_argument("--version", action="version", version=f"responseloop {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = commands.add_parser(
        "serve",
        help="serve the Responses API over HTTP",
        description="Serve POST /v1/responses (and the other routes) with uvicorn.",
        epilog=_PRECEDENCE,
    )
    add_options(serve, SERVE_OPTIONS)
    commands.add_parser(
        "hash-key",
        help="print the digest of an API key read from stdin",
        description="Read one API key from stdin and print its sha256: digest, for "
        "--api-keys-file, RESPONSELOOP_API_KEYS or an --access-file.",
    )
    return parser


def _settings(argv: Sequence[str] | None) -> argparse.Namespace:
    """The ``serve`` settings from every source (see :data:`SERVE_OPTIONS`).

    Raises:
        CliError: a value that does not parse or is missing (exit status 2).
    """
    given = _parser().parse_args(argv)
    if given.command != "serve":
        return given  # only serve's options come from the environment and the file
    environ = os.environ
    config = getattr(given, "config", None) or environ.get("RESPONSELOOP_CONFIG") or None
    try:
        return resolve(
            given,
            SERVE_OPTIONS,
            environ=environ,
            config=Path(config) if config is not None else None,
        )
    except SettingError as exc:
        raise CliError(str(exc), exit_code=2) from None


def _loop_config(args: argparse.Namespace) -> LoopConfig:
    """The :class:`LoopConfig` the settings ask for."""
    try:
        return LoopConfig(**{name: getattr(args, name) for name in _LOOP_FIELDS})
    except ValueError as exc:
        raise CliError(str(exc), exit_code=2) from exc


def _retry_policy(args: argparse.Namespace) -> RetryPolicy:
    """The :class:`RetryPolicy` the ``retry-…`` settings ask for."""
    try:
        return RetryPolicy(**{name: getattr(args, _retry_key(name)) for name in _RETRY_FIELDS})
    except ValueError as exc:
        raise CliError(f"--retry-…: {exc}", exit_code=2) from exc


API_KEYS_ENV = "RESPONSELOOP_API_KEYS"


def _read_text(flag: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"{flag}: cannot read {path}: {reason}", exit_code=2) from exc


def access_policy(
    args: argparse.Namespace, resolver: ToolResolver | None
) -> tuple[Authenticator | None, ToolResolver | None]:
    """The authenticator and tool resolver of the access flags: ``None`` and ``resolver``
    when no key is configured (open, as before); else an :class:`AccessPolicy` whose
    groups are the access file's, plus one of the ``--api-keys-file`` and
    ``$RESPONSELOOP_API_KEYS`` keys, which get the ``--tools``.

    Raises:
        CliError: a file cannot be read or is malformed (exit status 2).
    """
    from .access import AccessFileError, AccessPolicy, KeyGroup, key_lines, policy_from_toml

    digests: list[str] = []
    if args.api_keys_file:
        digests += key_lines(_read_text("--api-keys-file", args.api_keys_file))
    digests += key_lines("\n".join(os.environ.get(API_KEYS_ENV, "").split(",")))
    groups: list[KeyGroup] = []
    if args.access_file:
        text = _read_text("--access-file", args.access_file)
        try:
            groups = policy_from_toml(text, load_tools=_tools_of_access_file)
        except AccessFileError as exc:
            raise CliError(f"--access-file {args.access_file}: {exc}", exit_code=2) from exc
    if args.api_keys_file and not digests:
        raise CliError(f"--api-keys-file {args.api_keys_file}: holds no key", exit_code=2)
    if not digests and not groups:
        return None, resolver
    try:
        if digests:
            groups.append(KeyGroup("api-keys", digests, resolver))
        policy = AccessPolicy(groups)
    except ValueError as exc:
        raise CliError(f"access: {exc}", exit_code=2) from exc
    return policy, policy


def _tools_of_access_file(spec: str) -> ToolResolver:
    try:
        return load_tools(spec)
    except CliError as exc:
        raise CliError(f"--access-file: {exc}".replace(": --tools:", ":"), exit_code=2) from exc


_MCP_POLICY_KEYS = ("allowed_urls", "allow_private_addresses", "max_reply_bytes", "timeout")
_MCP_HTTP_KEYS = ("url", "api_key_env", "headers", "timeout")
_MCP_STDIO_KEYS = ("command", "args", "env", "env_from", "cwd", "timeout")
_MCP_LABEL = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class _McpFileError(ValueError):
    """A value of the --mcp-servers file, told with its key."""


def _mcp_strings(value: object, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _McpFileError(f"{key}: must be an array of strings")
    return list(value)


def _mcp_table(value: object, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _McpFileError(f"{key}: must be a table of strings")
    return dict(value)


def _mcp_seconds(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise _McpFileError(f"{key}: must be a positive number of seconds")
    if not math.isfinite(value):
        raise _McpFileError(f"{key}: must be finite")
    return float(value)


def _mcp_unknown(table: dict[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        names = ", ".join(f"{where}{name}" for name in unknown)
        raise _McpFileError(f"unknown keys: {names} (known: {', '.join(known)})")


def _mcp_server(label: str, table: object, environ: Mapping[str, str]) -> Any:
    from .tools.mcp import McpHttpServer, McpStdioServer

    where = f"servers.{label}"
    if not _MCP_LABEL.match(label):
        raise _McpFileError(f"{where}: a server_label is letters, digits, '_' and '-', at most 64")
    if not isinstance(table, dict):
        raise _McpFileError(f"{where}: must be a table")
    if ("url" in table) == ("command" in table):
        raise _McpFileError(f"{where}: needs url (streamable HTTP) or command (stdio), one of them")
    timeout = _mcp_seconds(table["timeout"], f"{where}.timeout") if "timeout" in table else 60.0
    if "url" in table:
        _mcp_unknown(table, _MCP_HTTP_KEYS, f"{where}.")
        url = table["url"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _McpFileError(f"{where}.url: must be an http:// or https:// URL")
        api_key = None
        if "api_key_env" in table:
            variable = table["api_key_env"]
            if not isinstance(variable, str) or not environ.get(variable):
                raise _McpFileError(f"{where}.api_key_env: ${variable} is not set")
            api_key = environ[variable]
        headers = _mcp_table(table.get("headers", {}), f"{where}.headers")
        return McpHttpServer(url, api_key=api_key, headers=headers, timeout=timeout)
    _mcp_unknown(table, _MCP_STDIO_KEYS, f"{where}.")
    command = table["command"]
    if not isinstance(command, str) or not command:
        raise _McpFileError(f"{where}.command: must be a non-empty string")
    env = _mcp_table(table.get("env", {}), f"{where}.env")
    for variable in _mcp_strings(table.get("env_from", []), f"{where}.env_from"):
        if variable not in environ:
            raise _McpFileError(f"{where}.env_from: ${variable} is not set")
        env[variable] = environ[variable]
    cwd = table.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise _McpFileError(f"{where}.cwd: must be a string")
    return McpStdioServer(
        command,
        _mcp_strings(table.get("args", []), f"{where}.args"),
        env=env or None,
        cwd=cwd,
        timeout=timeout,
    )


def mcp_policy_from_toml(text: str, environ: Mapping[str, str]) -> DeclaredMcpPolicy:
    """The :class:`~responseloop.tools.mcp.DeclaredMcpPolicy` of an ``--mcp-servers``
    file: ``allowed_urls``, ``allow_private_addresses``, ``max_reply_bytes``, ``timeout``
    and a ``[servers.<label>]`` table for each operator server (``url`` with
    ``api_key_env`` and ``headers``, or ``command`` with ``args``, ``env``, ``env_from``
    and ``cwd``; either with ``timeout``). Secrets come from ``environ``, by name.

    Raises:
        ValueError: the reason, naming the key.
    """
    import tomllib

    from .tools.mcp import DeclaredMcpPolicy

    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _McpFileError(f"not TOML: {exc}") from exc
    _mcp_unknown(table, (*_MCP_POLICY_KEYS, "servers"), "")
    servers = table.get("servers", {})
    if not isinstance(servers, dict):
        raise _McpFileError("servers: must be a table of [servers.<label>] tables")
    options: dict[str, Any] = {
        "servers": {label: _mcp_server(label, value, environ) for label, value in servers.items()}
    }
    if "allowed_urls" in table:
        options["allowed_urls"] = _mcp_strings(table["allowed_urls"], "allowed_urls")
    if "allow_private_addresses" in table:
        if not isinstance(table["allow_private_addresses"], bool):
            raise _McpFileError("allow_private_addresses: must be true or false")
        options["allow_private_addresses"] = table["allow_private_addresses"]
    if "max_reply_bytes" in table:
        size = table["max_reply_bytes"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise _McpFileError("max_reply_bytes: must be a whole number of bytes, at least 1")
        options["max_reply_bytes"] = size
    if "timeout" in table:
        options["timeout"] = _mcp_seconds(table["timeout"], "timeout")
    try:
        return DeclaredMcpPolicy(**options)
    except (TypeError, ValueError) as exc:
        raise _McpFileError(str(exc)) from exc


def declared_mcp_policy(args: argparse.Namespace) -> DeclaredMcpPolicy | None:
    """The policy of ``--mcp-servers``, or ``None`` (requests declare no MCP server).

    Raises:
        CliError: the file cannot be read or is malformed, or the MCP SDK is missing
            (exit status 2).
    """
    if not args.mcp_servers:
        return None
    text = _read_text("--mcp-servers", args.mcp_servers)
    try:
        policy = mcp_policy_from_toml(text, os.environ)
    except ValueError as exc:
        raise CliError(f"--mcp-servers {args.mcp_servers}: {exc}", exit_code=2) from exc
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise CliError(
            "--mcp-servers needs the MCP SDK: pip install 'responseloop[mcp]'", exit_code=2
        ) from None
    return policy


def metrics_observer(args: argparse.Namespace) -> PrometheusMetrics | None:
    """The :class:`PrometheusMetrics` of ``--metrics``, or ``None``.

    Raises:
        CliError: ``prometheus-client`` is not installed.
    """
    if not args.metrics:
        return None
    try:
        from .observe.prometheus import PrometheusMetrics

        return PrometheusMetrics()
    except ImportError as exc:
        raise CliError(f"--metrics: {exc}", exit_code=2) from exc


def hash_key(stdin: TextIO) -> int:
    """``responseloop hash-key``: print the digest of the key on stdin's first line."""
    from .access import key_digest

    key = stdin.readline().strip()
    if not key:
        print("responseloop: error: hash-key: no key on stdin", file=sys.stderr)
        return 2
    print(key_digest(key))
    return 0


_RANDOM_KEY_WARNING = (
    "no --reasoning-key-env: reasoning.encrypted_content is sealed with a random key of "
    "this process, so it will not open on another process or after a restart"
)


def reasoning_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~responseloop.openresponses.WireOptions` fields of the reasoning flags.

    Without ``--reasoning-key-env`` the key is random, made for this process: reasoning
    it seals opens only here, until it stops (``serve`` warns of it once it listens).

    Raises:
        CliError: the variable ``--reasoning-key-env`` names is not set.
    """
    if args.reasoning_key_env:
        secret = os.environ.get(args.reasoning_key_env)
        if not secret:
            raise CliError(
                f"--reasoning-key-env: ${args.reasoning_key_env} is not set", exit_code=2
            )
        key = secret.encode()
    else:
        key = secrets.token_bytes(32)
    replay = args.replay_reasoning_as
    return {"reasoning_key": key, "replay_reasoning_as": None if replay == "none" else replay}


def _wire_options(args: argparse.Namespace) -> WireOptions:
    """The :class:`WireOptions` the ``serve`` flags ask for.

    Raises:
        CliError: see :func:`reasoning_options`.
    """
    prompt = {"compaction_prompt": args.compaction_prompt} if args.compaction_prompt else {}
    return WireOptions(
        server_tool_items=args.server_tool_items,
        event_names=args.event_names,
        hosted_tools=args.hosted_tools,
        **reasoning_options(args),
        **prompt,
    )


async def _serve(
    args: argparse.Namespace,
    resolver: ToolResolver | None,
    key: str | None,
    wire: WireOptions,
    access: tuple[Authenticator | None, PrometheusMetrics | None] = (None, None),
    declared_mcp: DeclaredMcpPolicy | None = None,
) -> None:
    try:
        import uvicorn
    except ImportError as exc:
        raise CliError(
            "responseloop serve needs uvicorn: pip install 'responseloop[server]'"
        ) from exc
    from .asgi._app import create_app
    from .service import ResponsesService

    config = _loop_config(args)
    retry = _retry_policy(args)
    sock = _bind(args.host, args.port)
    try:
        async with (
            open_store(args.store, postgres_schema=args.postgres_schema) as store,
            _upstream_client(
                args.upstream_client,
                connect_timeout=args.upstream_connect_timeout,
                default_timeout=args.upstream_timeout,
                retry=retry,
                max_reply_bytes=args.max_upstream_reply_bytes,
                reply_timeout=args.upstream_reply_timeout,
                observer=access[1],
            ) as http_client,
        ):
            upstream = UpstreamTarget(args.upstream, "/chat/completions", key)
            if args.upstream_check:
                await _check_upstream(http_client, upstream, args.upstream_connect_timeout)
            service = ResponsesService(
                store=store,
                http_client=http_client,
                upstream=upstream,
                resolver=resolver,
                config=config,
                wire=wire,
                observer=access[1],
                declared_mcp=declared_mcp,
            )
            app = create_app(
                service,
                max_body_bytes=args.max_body_bytes,
                sweep_interval=args.sweep_interval,
                cancel_poll_interval=args.cancel_poll_interval,
                authenticator=access[0],
                metrics=access[1],
                websocket_connection_limit=args.websocket_connection_limit,
            )
            server_config = uvicorn.Config(
                app,
                lifespan="on",
                # The WebSocket mode's messages are request bodies: the same cap.
                ws_max_size=args.max_body_bytes,
                log_config=None,  # configure_logging did it, for uvicorn's loggers too
                log_level=args.log_level,
                timeout_graceful_shutdown=args.graceful_timeout,
            )
            if not args.reasoning_key_env:
                # After every check that can refuse to start: a refusal stays one line.
                logger.warning(_RANDOM_KEY_WARNING)
            host, port = sock.getsockname()[:2]
            # One line a supervisor (or a test) can read the chosen port from.
            print(f"responseloop serving on http://{host}:{port}", flush=True)
            await _draining_server(uvicorn, server_config, app, args.graceful_timeout).serve(
                sockets=[sock]
            )
    finally:
        sock.close()


def _upstream_client(kind: str, **settings: Any) -> Any:
    """The HTTP client ``--upstream-client`` names, not yet entered."""
    if kind == "aiohttp":
        try:
            from .http.aiohttp import AiohttpClient
        except ImportError as exc:
            raise CliError(
                "--upstream-client aiohttp needs aiohttp: pip install 'responseloop[aiohttp]'",
                exit_code=2,
            ) from exc
        return AiohttpClient(**settings)
    from .http._httpx import HttpxClient

    return HttpxClient.create(**settings)


def _draining_server(uvicorn: Any, config: Any, app: Any, grace: float) -> Any:
    """A uvicorn server that, asked to shut down, stops listening and drains the app
    (running responses finish within ``grace``, the rest are handed over, open streams end
    with an event) before uvicorn closes the connections."""

    class DrainingServer(uvicorn.Server):  # type: ignore[misc]
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for server in self.servers:
                server.close()
            for listening in sockets or []:
                listening.close()
            await app.drain(grace)
            await super().shutdown(sockets)

    return DrainingServer(config)


async def _check_upstream(http_client: Any, upstream: UpstreamTarget, wait: float) -> None:
    """Reach the upstream once (``GET {base}/models``): any HTTP answer, even an error
    status, shows it is there; only failing to get one refuses to start."""
    import httpx2

    url = upstream.base_url.rstrip("/") + "/models"
    try:
        client = getattr(http_client, "client", None)
        if isinstance(client, httpx2.AsyncClient):
            response = await client.get(url, headers=upstream.headers(), timeout=wait)
            await response.aclose()
        else:
            # Another upstream client (aiohttp): one throwaway httpx2 call answers the same.
            async with httpx2.AsyncClient() as checking:
                response = await checking.get(url, headers=upstream.headers(), timeout=wait)
                await response.aclose()
    except httpx2.TransportError as exc:
        raise CliError(
            f"cannot reach the upstream at {_redacted(url)} ({type(exc).__name__}); "
            "is it running? (--no-upstream-check starts without it)"
        ) from exc
    except httpx2.InvalidURL as exc:
        raise CliError(f"--upstream: {_redacted(url)} is not a valid URL", exit_code=2) from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``responseloop`` command; returns the exit status."""
    # Like ``python -m``: a --tools module in the current directory is importable from the
    # console script too (whose sys.path[0] is its own bin directory).
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    store = ""
    try:
        args = _settings(argv)
        if args.command == "hash-key":
            return hash_key(sys.stdin)
        store = args.store
        configure_logging(args.log_level, args.log_format)
        key = None
        if args.upstream_key_env:
            key = os.environ.get(args.upstream_key_env)
            if not key:
                raise CliError(
                    f"--upstream-key-env: ${args.upstream_key_env} is not set", exit_code=2
                )
        resolver = load_tools(args.tools) if args.tools else None
        authenticator, resolver = access_policy(args, resolver)
        metrics = metrics_observer(args)
        wire = _wire_options(args)
        declared_mcp = declared_mcp_policy(args)
        # uvicorn runs on asyncio; the library itself stays on anyio.
        access = (authenticator, metrics)
        anyio.run(_serve, args, resolver, key, wire, access, declared_mcp, backend="asyncio")
    except CliError as exc:
        # Redacted once more here: whatever a failure quotes, the store's secret is not in it.
        print(f"responseloop: error: {_redacted(str(exc), store)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
