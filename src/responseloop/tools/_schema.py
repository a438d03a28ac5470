"""JSON Schemas of Python functions, docstrings, a small argument checker and JSON results.

Schemas from type hints need pydantic (the ``pydantic`` extra), imported only when a tool
asks for one. Everything else here is plain Python.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..abc._config import RequestContext
from ..abc._json import JSON

__all__ = [
    "ArgumentModel",
    "check_arguments",
    "context_parameter",
    "parse_docstring",
    "to_json",
]

PYDANTIC_MISSING = (
    "building a tool's JSON Schema from its type hints needs pydantic: "
    "pip install 'responseloop[pydantic]', or pass parameters= with an explicit JSON Schema"
)

_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Returns|Return|Yields|Raises|Examples|Example|Note|Notes"
    r"|Attributes|See Also|Warnings?):\s*$"
)
_GOOGLE_ARG = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description (the prose before the first section) and the per-argument
    descriptions of a Google-style (``Args:``) or Sphinx-style (``:param x:``) docstring."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    prose: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        header = _SECTION.match(stripped)
        sphinx = _SPHINX_PARAM.match(stripped)
        if header and not line.startswith((" ", "\t")):
            section, current = header.group(1), None
        elif sphinx:
            section, current = "sphinx", sphinx.group(1)
            params[current] = sphinx.group(2).strip()
        elif stripped.startswith(":"):
            section, current = "sphinx", None  # :returns:, :raises: and the like
        elif section is None:
            prose.append(stripped)
        elif section in ("Args", "Arguments", "Parameters", "Params"):
            entry = _GOOGLE_ARG.match(stripped)
            indent = len(line) - len(line.lstrip())
            if entry and indent <= _entry_indent(lines, section):
                current = entry.group(1).lstrip("*")
                params[current] = entry.group(2).strip()
            elif current is not None and stripped:
                params[current] = f"{params[current]} {stripped}".strip()
        elif section == "sphinx" and current is not None and stripped:
            params[current] = f"{params[current]} {stripped}".strip()
    paragraphs = " ".join(line if line else "\n\n" for line in prose).split("\n\n")
    description = "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
    return description, params


def _entry_indent(lines: list[str], section: str) -> int:
    """The indentation of the first entry under ``section:`` (entries sit at that depth)."""
    seen = False
    for line in lines:
        if line.strip() == f"{section}:":
            seen = True
        elif seen and line.strip():
            return len(line) - len(line.lstrip())
    return 0


def context_parameter(fn: Callable[..., Any]) -> str | None:
    """The name of ``fn``'s parameter annotated :class:`~responseloop.RequestContext`."""
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):
        return None
    names = [name for name, hint in hints.items() if hint is RequestContext and name != "return"]
    return names[0] if names else None


def _pydantic() -> Any:
    try:
        import pydantic
    except ImportError as exc:
        raise ImportError(PYDANTIC_MISSING) from exc
    return pydantic


class ArgumentModel:
    """The arguments of one function as a pydantic model: its JSON Schema, and validation
    of a model's arguments into the values to call the function with.

    A parameter annotated :class:`~responseloop.RequestContext` is not an argument: it
    receives the call's context. attrs classes are supported alongside what pydantic
    supports natively (dataclasses, TypedDicts, enums, pydantic models, …).
    """

    def __init__(self, fn: Callable[..., Any], descriptions: Mapping[str, str]) -> None:
        pydantic = _pydantic()
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except (NameError, TypeError) as exc:
            raise TypeError(f"cannot resolve the type hints of {fn.__qualname__}: {exc}") from exc
        fields: dict[str, Any] = {}
        self._names: list[tuple[str, str, bool]] = []  # (parameter, field, positional-only)
        self.context_parameter: str | None = None
        for index, parameter in enumerate(inspect.signature(fn).parameters.values()):
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(
                    f"{fn.__qualname__}: a tool cannot take *args or **kwargs "
                    f"({parameter.name!r}); name every argument so it has a schema"
                )
            annotation = hints.get(parameter.name, Any)
            if annotation is RequestContext:
                self.context_parameter = parameter.name
                continue
            # Fields get neutral names and carry the parameter's name as alias, so a
            # parameter may be called anything (``schema``, ``model_config``, ``_x``…).
            field_name = f"p{index}"
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[field_name] = (
                _rewrite(annotation),
                pydantic.Field(
                    default,
                    alias=parameter.name,
                    description=descriptions.get(parameter.name),
                ),
            )
            positional = parameter.kind is parameter.POSITIONAL_ONLY
            self._names.append((parameter.name, field_name, positional))
        self._model = pydantic.create_model(
            f"{fn.__name__}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid", populate_by_name=False),
            **fields,
        )
        self.schema: dict[str, Any] = _clean(self._model.model_json_schema(by_alias=True))
        self.schema.setdefault("properties", {})

    def validate(self, arguments: JSON) -> tuple[list[Any], dict[str, Any]]:
        """The positional and keyword values to call the function with.

        Raises:
            ValueError: the arguments do not fit; the message lists each problem.
        """
        pydantic = _pydantic()
        try:
            validated = self._model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise ValueError(
                _problems(exc.errors(include_url=False, include_input=False))
            ) from None
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, field_name, positional in self._names:
            value = getattr(validated, field_name)
            if positional:
                args.append(value)
            else:
                kwargs[name] = value
        return args, kwargs


def _problems(errors: list[Any]) -> str:
    parts = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def _rewrite(annotation: Any) -> Any:
    """``annotation`` with every attrs class swapped for one pydantic can validate."""
    if attrs.has(annotation) and isinstance(annotation, type):
        return _attrs_annotation(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is None or not args or origin is typing.Literal:
        return annotation
    if origin is typing.Annotated:
        return typing.Annotated[(_rewrite(args[0]), *annotation.__metadata__)]
    rewritten = tuple(_rewrite(arg) for arg in args)
    if rewritten == args:
        return annotation
    if origin is typing.Union or origin is types.UnionType:
        return functools.reduce(lambda left, right: left | right, rewritten)
    return origin[rewritten if len(rewritten) > 1 else rewritten[0]]


@functools.cache
def _attrs_annotation(cls: type) -> Any:
    pydantic = _pydantic()
    from pydantic_core import core_schema

    attrs.resolve_types(cls)
    fields: dict[str, Any] = {}
    for field in attrs.fields(cls):
        if not field.init:
            continue
        if field.default is attrs.NOTHING:
            default: Any = ...
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            default = pydantic.Field(default_factory=field.default.factory)
        else:
            default = field.default
        fields[field.alias or field.name] = (_rewrite(field.type or Any), default)
    model = pydantic.create_model(
        cls.__name__, __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )

    def build(instance: Any) -> Any:
        return cls(**{name: getattr(instance, name) for name in fields})

    def schema(_source: Any, handler: Any) -> Any:
        return core_schema.no_info_after_validator_function(build, handler(model))

    return typing.Annotated[cls, pydantic.GetPydanticSchema(schema)]


_VERBATIM = frozenset({"default", "const", "enum", "examples"})
_NAMED = frozenset({"properties", "$defs", "definitions", "patternProperties"})


def _clean(node: Any, named: bool = False) -> Any:
    """Drop pydantic's generated ``title`` keys, which only cost the model tokens."""
    if isinstance(node, dict):
        if named:
            return {key: _clean(value) for key, value in node.items()}
        return {
            key: value if key in _VERBATIM else _clean(value, key in _NAMED)
            for key, value in node.items()
            if key != "title"
        }
    if isinstance(node, list):
        return [_clean(item) for item in node]
    return node


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def check_arguments(schema: Mapping[str, Any], value: JSON) -> list[str]:
    """The problems of ``value`` against ``schema`` (empty when it fits).

    Checks the common core of JSON Schema: ``type``, ``enum``, ``const``, ``properties``,
    ``required``, ``additionalProperties``, ``items``, ``anyOf``/``oneOf``/``allOf`` and
    local ``$ref``; other keywords are left to the tool itself.
    """
    problems: list[str] = []
    _check(schema, value, "arguments", schema, problems)
    return problems


def _check(
    schema: Any, value: Any, path: str, root: Mapping[str, Any], problems: list[str]
) -> None:
    if not isinstance(schema, Mapping):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, Mapping) else None
        _check(target, value, path, root, problems)
    expected = schema.get("type")
    if expected is not None:
        names = [expected] if isinstance(expected, str) else list(expected)
        if not any(_JSON_TYPES.get(name, lambda _v: True)(value) for name in names):
            problems.append(f"{path}: expected {' or '.join(names)}, got {_json_type(value)}")
            return
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: must be one of {json.dumps(schema['enum'])}")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{path}: must be {json.dumps(schema['const'])}")
    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if isinstance(options, list) and options:
            fits = [not _problems_of(option, value, path, root) for option in options]
            if not any(fits):
                problems.append(f"{path}: does not match any allowed shape")
    for option in schema.get("allOf") or []:
        _check(option, value, path, root, problems)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                problems.append(f"{path}.{name}: required")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                _check(properties[name], item, f"{path}.{name}", root, problems)
            elif extra is False:
                problems.append(f"{path}.{name}: unexpected argument")
            elif isinstance(extra, Mapping):
                _check(extra, item, f"{path}.{name}", root, problems)
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            _check(schema["items"], item, f"{path}[{index}]", root, problems)


def _problems_of(schema: Any, value: Any, path: str, root: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    _check(schema, value, path, root, problems)
    return problems


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _JSON_TYPES[name](value):
            return name
    return type(value).__name__


def to_json(value: Any) -> JSON:
    """``value`` as plain JSON data: strings pass through; attrs classes, dataclasses,
    pydantic models, enums, mappings and sequences are converted.

    Raises:
        TypeError: some part of the value has no JSON form.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TypeError(f"{value!r} has no JSON form")
        return value
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if attrs.has(type(value)):
        return to_json(attrs.asdict(value, recurse=False))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return to_json(dump(mode="json"))
    if isinstance(value, Mapping):
        return {_key(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(item) for item in value]
    raise TypeError(f"a {type(value).__name__} has no JSON form")


def _key(key: Any) -> str:
    if isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, str):
        return key
    if isinstance(key, int | float | bool):
        return json.dumps(key)
    raise TypeError(f"a {type(key).__name__} cannot be a JSON object key")
