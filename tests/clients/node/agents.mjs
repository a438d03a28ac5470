// The OpenAI Agents SDK for JS (@openai/agents 0.20.0, over openai 7.59.0) against
// responseloop serve.
import { Agent, run, setDefaultOpenAIClient, setTracingDisabled, tool } from "@openai/agents";
import OpenAI from "openai";
import { baseURL, LOOKUP_SCHEMA, runScenarios } from "./lib.mjs";

setTracingDisabled(true); // tracing would export to the internet
setDefaultOpenAIClient(new OpenAI({ baseURL: baseURL(), apiKey: "dummy" }));

function lookupTool(ran) {
  return tool({
    name: "client_lookup",
    description: "Look a key up (run by the client).",
    parameters: LOOKUP_SCHEMA,
    strict: true,
    execute: async ({ key }) => {
      ran.push(key);
      return `lookup-${key}`;
    },
  });
}

function agent(tools = [], modelSettings = {}) {
  return new Agent({ name: "tester", model: "m", tools, modelSettings });
}

async function go(stream, bot, input, options = {}) {
  if (!stream) return run(bot, input, options);
  const result = await run(bot, input, { ...options, stream: true });
  for await (const _ of result) {
    // drain the events
  }
  await result.completed;
  return result;
}

function scenarios(stream) {
  const tag = stream ? "stream" : "run";
  return {
    [`plain_${tag}`]: async () => ({ text: (await go(stream, agent(), "say hi")).finalOutput }),
    [`client_tool_${tag}`]: async () => {
      const ran = [];
      const r = await go(stream, agent([lookupTool(ran)]), "client lookup please");
      return { text: r.finalOutput, ran };
    },
    [`server_tool_${tag}`]: async () => ({ text: (await go(stream, agent(), "server weather in Paris?")).finalOutput }),
    [`both_tools_${tag}`]: async () => {
      const ran = [];
      const r = await go(stream, agent([lookupTool(ran)]), "both tools now");
      return { text: r.finalOutput, ran };
    },
    [`previous_response_id_${tag}`]: async () => {
      const bot = agent();
      const first = await go(stream, bot, `my word is agentsprev${tag}`);
      const second = await go(stream, bot, "what is my word?", { previousResponseId: first.lastResponseId });
      return { text: second.finalOutput };
    },
    [`default_history_${tag}`]: async () => {
      const bot = agent();
      const first = await go(stream, bot, `my word is agentshistory${tag}`);
      const second = await go(stream, bot, [...first.history, { role: "user", content: "what is my word?" }]);
      return { text: second.finalOutput };
    },
    [`reasoning_${tag}`]: async () => {
      const r = await go(stream, agent([], { reasoning: { summary: "auto" } }), "think hard");
      // The SDK shows a reasoning item's summary as its content.
      const reasoning = r.newItems.filter((i) => i.type === "reasoning_item")
        .flatMap((i) => i.rawItem.content.map((c) => c.text));
      return { text: r.finalOutput, reasoning };
    },
  };
}

await runScenarios({ ...scenarios(false), ...scenarios(true) });
