// The Vercel AI SDK (`ai` + `@ai-sdk/openai`, whose default `openai(model)` speaks the Responses
// API) against a gateway. Usage: node ai_sdk.mjs BASE_URL API_KEY MODEL SCENARIO...
// Prints one JSON line per scenario: {"scenario", ...what it saw} or {"scenario", "error", "body"}.
// The test copies this file next to the installed node_modules (ES modules resolve from there).
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';

const [baseURL, apiKey, model, ...scenarios] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey });
globalThis.AI_SDK_LOG_WARNINGS = false;

function weatherTools(calls) {
  return {
    get_weather: tool({
      description: 'The weather in a city',
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => {
        calls.push(city);
        return `sunny in ${city}`;
      },
    }),
  };
}

const run = {
  // one plain answer
  async generate() {
    const r = await generateText({ model: openai(model), prompt: 'hello from the ai sdk' });
    return { text: r.text, finishReason: r.finishReason, usage: r.usage.totalTokens, id: r.response.id };
  },
  // a tool loop: the model calls get_weather, the SDK runs it and sends the output back
  async tools() {
    const calls = [];
    const r = await generateText({ model: openai(model), prompt: '/tool get_weather {"city":"Paris"}',
      tools: weatherTools(calls), stopWhen: stepCountIs(3) });
    return { text: r.text, steps: r.steps.length, calls };
  },
  // the same loop streamed
  async stream() {
    const calls = [];
    const s = streamText({ model: openai(model), prompt: '/tool get_weather {"city":"Oslo"}',
      tools: weatherTools(calls), stopWhen: stepCountIs(3) });
    const parts = [];
    for await (const p of s.fullStream) {
      if (p.type === 'error') throw p.error;
      parts.push(p.type);
    }
    return { text: await s.text, finishReason: await s.finishReason, parts: [...new Set(parts)], calls };
  },
  // a tool loop whose first step has reasoning: with store (the SDK's default) the SDK sends
  // that reasoning back as an item_reference to the stored item
  async reasoningTools() {
    const calls = [];
    const r = await generateText({ model: openai(model), prompt: '/think I need the weather\n/tool get_weather {"city":"Rome"}',
      tools: weatherTools(calls), stopWhen: stepCountIs(3) });
    return { text: r.text, steps: r.steps.length, calls, reasoning: r.steps[0].reasoningText };
  },
  // the same with store: false (the reasoning, which has no encrypted content, is left out)
  async reasoningToolsUnstored() {
    const calls = [];
    const r = await generateText({ model: openai(model), prompt: '/think I need the weather\n/tool get_weather {"city":"Rome"}',
      tools: weatherTools(calls), stopWhen: stepCountIs(3), providerOptions: { openai: { store: false } } });
    return { text: r.text, steps: r.steps.length, calls, reasoning: r.steps[0].reasoningText };
  },
};

for (const scenario of scenarios) {
  try {
    console.log(JSON.stringify({ scenario, ...(await run[scenario]()) }));
  } catch (e) {
    console.log(JSON.stringify({ scenario, error: String(e), body: e?.responseBody ?? null }));
  }
}
