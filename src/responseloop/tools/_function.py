"""FunctionTools: Python functions as server-side tools."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

import anyio
import anyio.to_thread
import attrs

from ..abc._config import RequestContext
from ..abc._json import JSON
from ..abc._tools import ToolSchema
from ..exceptions import ToolArgumentsError, ToolExecutionError, ToolNotFound, ToolTimeout
from ._schema import ArgumentModel, check_arguments, context_parameter, parse_docstring, to_json

__all__ = ["FunctionTools"]

_F = TypeVar("_F", bound=Callable[..., Any])


@attrs.frozen
class _Registered:
    schema: ToolSchema
    fn: Callable[..., Any] = attrs.field(eq=False)
    is_async: bool
    timeout: float | None
    arguments: ArgumentModel | None = attrs.field(eq=False)
    context_parameter: str | None


class FunctionTools:
    """A :class:`~responseloop.abc.ToolExecutor` of Python functions, sync or async.

    ::

        tools = FunctionTools()

        @tools.tool
        def weather(city: str, unit: Literal["C", "F"] = "C") -> dict[str, object]:
            \"\"\"Current weather of a city.

            Args:
                city: the city's name.
                unit: the temperature unit.
            \"\"\"

    The JSON Schema comes from the type hints (pydantic, the ``pydantic`` extra) and the
    description from the docstring; or pass ``parameters=`` with your own schema, which
    needs no pydantic. Arguments are validated before the call: a model's bad arguments
    come back to it as a :class:`~responseloop.exceptions.ToolArgumentsError`. Sync functions run in
    a worker thread, async ones on the event loop. A parameter annotated
    :class:`~responseloop.RequestContext` receives the call's context. Results are
    converted to JSON (strings pass through). An exception the function raises reaches
    the loop as is; raise :class:`~responseloop.exceptions.ToolExecutionError` for a message meant
    for the model.
    """

    def __init__(self) -> None:
        self._tools: dict[str, _Registered] = {}

    @overload
    def tool(
        self,
        fn: _F,
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
        strict: bool = False,
    ) -> _F: ...

    @overload
    def tool(
        self,
        fn: None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
        strict: bool = False,
    ) -> Callable[[_F], _F]: ...

    def tool(
        self,
        fn: _F | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
        strict: bool = False,
    ) -> _F | Callable[[_F], _F]:
        """Register ``fn`` as a tool; use bare (``@tools.tool``), with options
        (``@tools.tool(timeout=5)``) or as a call (``tools.tool(fn, name="x")``).

        Args:
            fn: the function, sync or async.
            name: the tool's name (default: the function's name).
            description: what the model is told the tool does (default: the docstring's
                prose before its sections).
            parameters: an explicit JSON Schema of the arguments, checked before the call
                (default: built from the type hints, which needs pydantic).
            timeout: seconds a call may take before it fails with
                :class:`~responseloop.exceptions.ToolTimeout` (a sync function's thread is
                abandoned, not killed: it runs to its end in the background).
            idempotent: whether a call may safely run twice, which lets resume re-fire it
                (:attr:`~responseloop.LoopConfig.refire_idempotent_tools`).
            strict: ask the model for strict schema adherence.

        Returns:
            ``fn`` itself, unchanged (or a decorator doing the above).

        Raises:
            ValueError: the name is taken, or the timeout is not positive.
            TypeError: the signature cannot become a schema.
            ImportError: no ``parameters`` and pydantic is not installed.
        """

        def register(function: _F) -> _F:
            self._register(
                function,
                name=name,
                description=description,
                parameters=parameters,
                timeout=timeout,
                idempotent=idempotent,
                strict=strict,
            )
            return function

        return register(fn) if fn is not None else register

    def _register(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None,
        description: str | None,
        parameters: Mapping[str, Any] | None,
        timeout: float | None,
        idempotent: bool,
        strict: bool,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"a tool must be a function, got {type(fn).__name__}")
        tool_name = name or getattr(fn, "__name__", "")
        if not tool_name or tool_name == "<lambda>":
            raise ValueError("a tool needs a name: pass name=")
        if tool_name in self._tools:
            raise ValueError(f"a tool named {tool_name!r} is already registered")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        prose, documented = parse_docstring(inspect.getdoc(fn))
        model = ArgumentModel(fn, documented) if parameters is None else None
        schema = ToolSchema(
            name=tool_name,
            description=prose if description is None else description,
            parameters=model.schema if model is not None else dict(parameters or {}),
            strict=strict,
            idempotent=idempotent,
        )
        self._tools[tool_name] = _Registered(
            schema=schema,
            fn=fn,
            is_async=_is_async(fn),
            timeout=timeout,
            arguments=model,
            context_parameter=(
                model.context_parameter if model is not None else context_parameter(fn)
            ),
        )

    @property
    def tool_names(self) -> frozenset[str]:
        """The names of the registered tools."""
        return frozenset(self._tools)

    def schemas(self) -> list[ToolSchema]:
        """The schemas of the registered tools, in registration order."""
        return [tool.schema for tool in self._tools.values()]

    async def tools(self, ctx: RequestContext) -> Sequence[ToolSchema]:
        """Every registered tool, whatever the context."""
        return self.schemas()

    async def execute(self, name: str, call_id: str, arguments: JSON, ctx: RequestContext) -> JSON:
        """Validate ``arguments``, call the function and return its result as JSON.

        Raises:
            ToolNotFound: no tool of that name is registered.
            ToolArgumentsError: the arguments do not fit the tool's schema.
            ToolTimeout: the call took longer than the tool's timeout.
            ToolExecutionError: the result has no JSON form.
        """
        tool = self._tools.get(name)
        if tool is None:
            raise ToolNotFound(name)
        args, kwargs = _bind(tool, arguments)
        if tool.context_parameter is not None:
            kwargs[tool.context_parameter] = ctx
        limit = tool.timeout
        with anyio.move_on_after(limit if limit is not None else math.inf) as deadline:
            if tool.is_async:
                result = await tool.fn(*args, **kwargs)
            else:
                call = functools.partial(tool.fn, *args, **kwargs)
                result = await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        if deadline.cancelled_caught:
            raise ToolTimeout(f"tool {name!r} timed out after {limit}s")
        try:
            return to_json(result)
        except TypeError as exc:
            raise ToolExecutionError(
                f"tool {name!r} returned a value with no JSON form: {exc}"
            ) from None


def _bind(tool: _Registered, arguments: JSON) -> tuple[list[Any], dict[str, Any]]:
    name = tool.schema.name
    if not isinstance(arguments, dict):
        raise ToolArgumentsError(
            f"invalid arguments for tool {name!r}: expected a JSON object, "
            f"got {type(arguments).__name__}"
        )
    if tool.arguments is not None:
        try:
            return tool.arguments.validate(arguments)
        except ValueError as exc:
            raise ToolArgumentsError(f"invalid arguments for tool {name!r}: {exc}") from None
    problems = check_arguments(tool.schema.parameters, arguments)
    if problems:
        raise ToolArgumentsError(f"invalid arguments for tool {name!r}: {'; '.join(problems)}")
    return [], dict(arguments)


def _is_async(fn: Callable[..., Any]) -> bool:
    target: Any = fn
    while isinstance(target, functools.partial):
        target = target.func
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004
    )
