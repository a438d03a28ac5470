// Shared by the scenario scripts: run each named scenario in turn, catching its error, and
// print one JSON line { name: { ...result } | { error } } for the pytest side to judge.
export const WEATHER = JSON.stringify({ city: "Paris", temperature_c: 21, sky: "sunny" });

export const LOOKUP_SCHEMA = {
  type: "object",
  properties: { key: { type: "string" } },
  required: ["key"],
  additionalProperties: false,
};

export function baseURL() {
  const url = process.argv[2];
  if (!url) throw new Error("usage: node SCRIPT <server base URL ending in /v1>");
  return url;
}

export async function runScenarios(scenarios) {
  const results = {};
  for (const [name, scenario] of Object.entries(scenarios)) {
    try {
      results[name] = await scenario();
    } catch (error) {
      results[name] = { error: String(error?.stack ?? error).slice(0, 2000) };
    }
  }
  process.stdout.write(JSON.stringify(results) + "\n");
}
