"""The server-side tools ``responseloop serve`` runs in the client tests
(``--tools tests.clients.server_tools:tools``)."""

from __future__ import annotations

import json
from typing import Any

from responseloop import FunctionTools

tools = FunctionTools()

# What server_weather returns for Paris (the city the scripted model asks about), as the
# model is told it and the client sees it in the tool's output.
WEATHER = json.dumps({"city": "Paris", "temperature_c": 21, "sky": "sunny"})


@tools.tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}})
def server_weather(city: str) -> dict[str, Any]:
    """The weather in a city (run by the server, never by the client)."""
    return {"city": city, "temperature_c": 21, "sky": "sunny"}
