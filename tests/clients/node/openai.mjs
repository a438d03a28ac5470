// The official openai Node client (openai 7.59.0) against responseloop serve.
import OpenAI from "openai";
import { baseURL, LOOKUP_SCHEMA, runScenarios } from "./lib.mjs";

const client = new OpenAI({ baseURL: baseURL(), apiKey: "dummy" });
const lookup = {
  type: "function",
  name: "client_lookup",
  description: "Look a key up (run by the client).",
  parameters: LOOKUP_SCHEMA,
  strict: true,
};

async function create(stream, body) {
  if (!stream) return client.responses.create({ model: "m", ...body });
  let final = null;
  for await (const event of await client.responses.create({ model: "m", stream: true, ...body })) {
    if (event.type === "response.completed") final = event.response;
  }
  return final;
}

function summary(response) {
  return {
    text: response.output_text ?? response.output.filter((i) => i.type === "message")
      .flatMap((i) => i.content).map((c) => c.text).join(""),
    types: response.output.map((i) => i.type),
    status: response.status,
  };
}

function scenarios(stream) {
  const tag = stream ? "stream" : "create";
  return {
    [`plain_${tag}`]: async () => summary(await create(stream, { input: "say hi" })),
    [`client_tool_${tag}`]: async () => {
      const first = await create(stream, { input: "client lookup please", tools: [lookup] });
      const calls = first.output.filter((i) => i.type === "function_call");
      const second = await create(stream, {
        previous_response_id: first.id,
        tools: [lookup],
        input: calls.map((c) => ({ type: "function_call_output", call_id: c.call_id, output: "lookup-k1" })),
      });
      return { calls: calls.map((c) => c.name), ...summary(second) };
    },
    [`server_tool_${tag}`]: async () => summary(await create(stream, { input: "server weather in Paris?" })),
    [`both_tools_${tag}`]: async () => {
      const first = await create(stream, { input: "both tools now", tools: [lookup] });
      const calls = first.output.filter((i) => i.type === "function_call" && i.name === "client_lookup");
      const second = await create(stream, {
        previous_response_id: first.id,
        tools: [lookup],
        input: calls.map((c) => ({ type: "function_call_output", call_id: c.call_id, output: "lookup-k1" })),
      });
      return { calls: calls.map((c) => c.name), ...summary(second) };
    },
    [`previous_response_id_${tag}`]: async () => {
      const first = await create(stream, { input: `my word is nodeprev${tag}` });
      return summary(await create(stream, { previous_response_id: first.id, input: "what is my word?" }));
    },
    [`unstored_history_${tag}`]: async () => {
      const history = [{ role: "user", content: `my word is nodereplay${tag}` }];
      const first = await create(stream, { input: history, store: false });
      history.push(...first.output, { role: "user", content: "what is my word?" });
      return summary(await create(stream, { input: history, store: false }));
    },
    [`reasoning_${tag}`]: async () => {
      const response = await create(stream, { input: "think hard", reasoning: { summary: "auto" } });
      const reasoning = response.output.filter((i) => i.type === "reasoning");
      return { ...summary(response), summary: reasoning.flatMap((i) => i.summary.map((s) => s.text)) };
    },
  };
}

await runScenarios({ ...scenarios(false), ...scenarios(true) });
