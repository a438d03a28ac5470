"""The public namespace is exactly ``__all__``, sorted, and every name in it is real."""

from __future__ import annotations
import __future__

import types

import responseloop
import responseloop.testing


def isort_style(name: str) -> tuple[int, str]:
    """The order ruff (RUF022) keeps ``__all__`` in: CONSTANTS, Classes, then the rest."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


def test_all_is_sorted() -> None:
    assert responseloop.__all__ == sorted(responseloop.__all__, key=isort_style)


def test_all_matches_the_public_namespace() -> None:
    for name in responseloop.__all__:  # the facade is lazy: load every name first
        getattr(responseloop, name)
    public = {
        name
        for name, value in vars(responseloop).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType | __future__._Feature)
    }
    assert public | {"__version__"} == set(responseloop.__all__)


def test_every_exported_name_resolves_and_is_documented() -> None:
    for name in responseloop.__all__:
        value = getattr(responseloop, name)
        if isinstance(value, type) or callable(value):
            assert value.__doc__, f"{name} has no docstring"


def test_testing_module_exports_what_it_defines() -> None:
    assert responseloop.testing.__all__ == sorted(responseloop.testing.__all__, key=isort_style)
    for name in responseloop.testing.__all__:
        assert getattr(responseloop.testing, name).__doc__
