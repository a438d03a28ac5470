"""The official openai client calling the loop in-process, through ResponseLoopTransport.

Runs offline: a scripted model stands in for the chat-completions server. Set
OPENAI_BASE_URL (and OPENAI_API_KEY, OPENAI_MODEL) to point the loop at a real one.

    python examples/openai_client.py
"""

from __future__ import annotations

import os

import anyio
import httpx2
import openai

from responseloop import FunctionTools, ResponseLoopTransport
from responseloop.testing import ChatReply, ScriptedChatModel

tools = FunctionTools()


@tools.tool(
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
)
def get_weather(city: str) -> dict[str, object]:
    """Current temperature in a city, in degrees Celsius."""
    return {"city": city, "temperature_c": 18}


def transport() -> ResponseLoopTransport:
    base_url = os.environ.get("OPENAI_BASE_URL")
    if base_url:
        return ResponseLoopTransport.to_upstream(
            base_url, api_key=os.environ.get("OPENAI_API_KEY"), tools=tools
        )
    scripted = ScriptedChatModel(
        [
            ChatReply.tool_call("get_weather", {"city": "Paris"}),
            ChatReply.text("It is 18 °C in Paris."),
        ]
    )
    return ResponseLoopTransport.to_upstream(
        "http://scripted.invalid/v1", tools=tools, http_client=scripted
    )


async def main() -> None:
    async with openai.AsyncOpenAI(
        base_url="http://responseloop.local/v1",
        api_key="caller-key",  # picks this caller's tools; never sent upstream
        http_client=httpx2.AsyncClient(transport=transport()),
    ) as client:
        response = await client.responses.create(
            model=os.environ.get("OPENAI_MODEL", "scripted-model"),
            input="What's the weather in Paris?",
        )
        print("status:", response.status)
        print("output:", [item.type for item in response.output])
        print("answer:", response.output_text)
        again = await client.responses.retrieve(response.id)
        print("retrieved:", again.id == response.id, again.status)


if __name__ == "__main__":
    anyio.run(main)
