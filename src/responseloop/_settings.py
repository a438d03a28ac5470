"""Settings from three sources, one table: the command line, ``RESPONSELOOP_*`` environment
variables and a TOML file, in that order of precedence, over each option's default.

Each :class:`Option` is declared once; its flag (``--step-timeout``), environment variable
(``RESPONSELOOP_STEP_TIMEOUT``) and file key (``step_timeout``) all follow from its name,
and every source's text goes through the same ``parse``, so an option cannot behave
differently depending on where it was set.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = ["Option", "SettingError", "add_options", "resolve"]

ENV_PREFIX = "RESPONSELOOP_"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SettingError(Exception):
    """A value that does not parse, told as one line naming where it came from."""


@attrs.frozen
class Option:
    """One setting of a command.

    Attributes:
        name: the flag without its dashes (``step-timeout``).
        help: what it means (its default and variable are added by :func:`add_options`).
        parse: text to value; raises ``ValueError`` or ``argparse.ArgumentTypeError``
            with the reason. ``None`` for a switch (``--x``/``--no-x``).
        default: the value when no source sets it (``None``: unset).
        choices: the only texts it accepts.
        metavar: the value's name in ``--help``.
        shown_default: the default as ``--help`` shows it, when ``str(default)`` is not it.
        required: one of the sources must set it.
    """

    name: str
    help: str
    parse: Callable[[str], Any] | None = str
    default: Any = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    shown_default: str | None = None
    required: bool = False

    @property
    def key(self) -> str:
        """Its attribute on the namespace, and its key in the TOML file."""
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        """Its environment variable."""
        return ENV_PREFIX + self.key.upper()

    @property
    def switch(self) -> bool:
        return self.parse is None

    def value_of(self, text: str) -> Any:
        """``text`` as this option's value (the command line, the environment and the file
        all come through here)."""
        if self.switch:
            lowered = text.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(f"not a yes/no value: {text!r} (use true or false)")
        if self.choices is not None and text not in self.choices:
            raise ValueError(f"{text!r} is not one of {', '.join(self.choices)}")
        assert self.parse is not None
        return self.parse(text)

    def described_default(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None:
            return "none"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Add each option's flag to ``parser``. Flags have no argparse default (a flag not
    given stays off the namespace), so :func:`resolve` can tell what the command line set."""
    for option in options:
        suffix = (
            f" [{'required' if option.required else 'default: ' + option.described_default()}"
            f"; env {option.env}]"
        )
        flag = f"--{option.name}"
        if option.switch:
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=option.help + suffix,
            )
            continue
        parser.add_argument(
            flag,
            type=_argparse_type(option),
            default=argparse.SUPPRESS,
            metavar=option.metavar
            or ("{" + ",".join(option.choices) + "}" if option.choices else None),
            help=option.help + suffix,
        )


def _argparse_type(option: Option) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return option.value_of(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = option.key  # argparse names it in "invalid <name> value"
    return convert


def resolve(
    given: argparse.Namespace,
    options: Sequence[Option],
    *,
    environ: Mapping[str, str],
    config: Path | None,
) -> argparse.Namespace:
    """Every option's value: the command line's (already on ``given``), else its
    environment variable's, else the TOML file's, else its default.

    Raises:
        SettingError: a variable or a file value that does not parse, a file that cannot
            be read or names an unknown key, or a required option no source sets.
    """
    table = _read_file(config, options) if config is not None else {}
    resolved = argparse.Namespace(**vars(given))
    for option in options:
        if hasattr(given, option.key):
            continue
        if option.env in environ:
            value = _parsed(option, environ[option.env], option.env)
        elif option.key in table:
            assert config is not None
            value = _from_file(option, table[option.key], f"{config}: {option.key}")
        elif option.required:
            raise SettingError(
                f"--{option.name} is required (or ${option.env}, or {option.key} in --config)"
            )
        else:
            value = option.default
        setattr(resolved, option.key, value)
    return resolved


def _parsed(option: Option, text: str, where: str) -> Any:
    try:
        return option.value_of(text)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise SettingError(f"{where}: {exc}") from None


def _from_file(option: Option, value: object, where: str) -> Any:
    # TOML has its own types; each goes through the option's parse like a flag's text.
    if isinstance(value, bool):
        if not option.switch:
            raise SettingError(f"{where}: expected a value, not {str(value).lower()}")
        return value
    if isinstance(value, list):
        return _parsed(option, ",".join(str(item) for item in value), where)
    if isinstance(value, str | int | float):
        return _parsed(option, str(value), where)
    raise SettingError(f"{where}: not a string, number or boolean")


def _read_file(path: Path, options: Sequence[Option]) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise SettingError(f"--config: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(f"--config: {path} is not TOML: {exc}") from exc
    known = {option.key for option in options}
    unknown = sorted(set(table) - known)
    if unknown:
        raise SettingError(f"--config: {path} has unknown keys: {', '.join(unknown)}")
    return table
