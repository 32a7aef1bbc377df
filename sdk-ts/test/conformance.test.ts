// `rally conformance` drives the TypeScript conformance agent through every scenario.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { AMQP_URL, RALLY_BIN, run, SDK_ROOT } from "./fleet";

interface Row {
  scenario: string;
  passed: boolean;
  status: string;
  reason: string;
  agent_log?: string | null;
}

test("the TypeScript agent passes every rally conformance scenario", { timeout: 900_000 }, async () => {
  const agent = join(SDK_ROOT, "dist", "examples", "conformance-agent.js");
  const env = { ...(process.env as Record<string, string>), RALLY_AMQP_URL: AMQP_URL, RALLY_LOG_LEVEL: "WARNING" };
  let out: string;
  try {
    out = await run(RALLY_BIN, ["conformance", "--agent-cmd", `node ${JSON.stringify(agent)}`, "--json"], env, 880_000);
  } catch (err) {
    out = (err as Error).message;
  }
  const rows: Row[] = out
    .split("\n")
    .filter((line) => line.startsWith("{") && line.includes('"scenario"'))
    .map((line) => JSON.parse(line) as Row);
  assert.ok(rows.length >= 10, `expected every scenario, got:\n${out.slice(-4000)}`);
  const failed = rows.filter((r) => !r.passed);
  const logs = failed.map((r) => `--- ${r.scenario}: ${r.agent_log}\n${tail(r.agent_log)}`).join("\n");
  assert.deepEqual(failed.map((r) => `${r.scenario}: ${r.reason}`), [], `${out.slice(-4000)}\n${logs}`);
});

function tail(path: string | null | undefined): string {
  if (!path) return "";
  try {
    return readFileSync(path, "utf8").slice(-3000);
  } catch {
    return "(log gone)";
  }
}
