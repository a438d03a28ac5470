// The Vercel AI SDK (ai 6.0.326 + @ai-sdk/openai 3.0.141) against responseloop serve.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";
import { baseURL, LOOKUP_SCHEMA, runScenarios } from "./lib.mjs";

const provider = createOpenAI({ baseURL: baseURL(), apiKey: "dummy" });
const model = provider.responses("m");

function lookupTool(ran) {
  return tool({
    description: "Look a key up (run by the client).",
    inputSchema: jsonSchema(LOOKUP_SCHEMA),
    execute: async ({ key }) => {
      ran.push(key);
      return `lookup-${key}`;
    },
  });
}

async function ask(stream, options) {
  const call = { model, stopWhen: stepCountIs(5), ...options };
  if (!stream) {
    const r = await generateText(call);
    return { text: r.text, reasoning: r.reasoningText ?? null, response: r.response, metadata: r.providerMetadata, steps: r.steps };
  }
  const r = streamText({ ...call, onError: () => {} });
  const text = await r.text;
  return { text, reasoning: (await r.reasoningText) ?? null, response: await r.response, metadata: await r.providerMetadata, steps: await r.steps };
}

// What the user sees; every tool call the SDK would run on the client (in any step); and
// the calls it shows as run by the provider (the server's mcp_call items).
const allCalls = (r) => r.steps.flatMap((step) => step.toolCalls);
const plainResult = (r) => ({
  text: r.text,
  reasoning: r.reasoning,
  toolCalls: allCalls(r).filter((c) => !c.providerExecuted).map((c) => c.toolName),
  serverCalls: allCalls(r).filter((c) => c.providerExecuted).map((c) => c.toolName),
});

function scenarios(stream) {
  const tag = stream ? "streamText" : "generateText";
  return {
    [`plain_${tag}`]: async () => plainResult(await ask(stream, { prompt: "say hi" })),
    [`client_tool_${tag}`]: async () => {
      const ran = [];
      const r = await ask(stream, { prompt: "client lookup please", tools: { client_lookup: lookupTool(ran) } });
      return { ...plainResult(r), ran };
    },
    [`server_tool_${tag}`]: async () => plainResult(await ask(stream, { prompt: "server weather in Paris?" })),
    [`both_tools_${tag}`]: async () => {
      const ran = [];
      const r = await ask(stream, { prompt: "both tools now", tools: { client_lookup: lookupTool(ran) } });
      return { ...plainResult(r), ran };
    },
    [`default_history_${tag}`]: async () => {
      const first = await ask(stream, { prompt: `my word is aisdkhistory${tag}` });
      const messages = [
        { role: "user", content: `my word is aisdkhistory${tag}` },
        ...first.response.messages,
        { role: "user", content: "what is my word?" },
      ];
      return plainResult(await ask(stream, { messages }));
    },
    [`previous_response_id_${tag}`]: async () => {
      const first = await ask(stream, { prompt: `my word is aisdkprev${tag}` });
      const previousResponseId = first.metadata?.openai?.responseId;
      return plainResult(await ask(stream, { prompt: "what is my word?", providerOptions: { openai: { previousResponseId } } }));
    },
    [`unstored_history_${tag}`]: async () => {
      const providerOptions = { openai: { store: false } };
      const first = await ask(stream, { prompt: `my word is aisdkreplay${tag}`, providerOptions });
      const messages = [
        { role: "user", content: `my word is aisdkreplay${tag}` },
        ...first.response.messages,
        { role: "user", content: "what is my word?" },
      ];
      return plainResult(await ask(stream, { messages, providerOptions }));
    },
    [`reasoning_${tag}`]: async () =>
      plainResult(await ask(stream, { prompt: "think hard", providerOptions: { openai: { reasoningSummary: "auto", forceReasoning: true } } })),
  };
}

await runScenarios({ ...scenarios(false), ...scenarios(true) });
