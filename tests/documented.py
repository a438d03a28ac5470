"""The command an example's docstring says to run it with (its ``::`` block), read the way
a user reads it, so that the tests run the example exactly so."""

from __future__ import annotations

import ast
import itertools
import re
import shlex

from tests.asgi.serving import ROOT

EXAMPLES = ROOT / "examples"
_ASSIGNMENT = re.compile(r"^[A-Z_]+=")


def _documented_block(example: str) -> str:
    """The literal block of the docstring of ``examples/EXAMPLE.py``: how to run it."""
    docstring = ast.get_docstring(ast.parse((EXAMPLES / f"{example}.py").read_text()))
    assert docstring is not None
    return docstring.split("::\n\n", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")


def documented_command(example: str) -> list[str]:
    """The command the docstring of ``examples/EXAMPLE.py`` says to run from the repository
    root, without the variables it sets first (:func:`documented_variables`)."""
    words = shlex.split(_documented_block(example))
    variables = list(itertools.takewhile(lambda word: _ASSIGNMENT.match(word), words))
    return words[len(variables) :]


def documented_variables(example: str) -> dict[str, str]:
    """The variables the documented command sets, with their documented values (a test
    gives each its own value)."""
    words = shlex.split(_documented_block(example))
    assignments = itertools.takewhile(lambda word: _ASSIGNMENT.match(word), words)
    return dict(word.split("=", 1) for word in assignments)


def documented_url(example: str) -> str:
    """The URL the docstring tells the reader to point a client at (after the block)."""
    docstring = ast.get_docstring(ast.parse((EXAMPLES / f"{example}.py").read_text()))
    assert docstring is not None
    found = re.search(r"``(http://[^`]+)``", docstring.split("::\n\n", 1)[1])
    assert found is not None, "the docstring names the URL to use"
    return found.group(1)
