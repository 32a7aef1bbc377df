// The README's quick start, as written: the agent and the client as processes of their own.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { eventually, Fleet, run, SDK_ROOT } from "./fleet";

const fleet = new Fleet();

before(() => fleet.start());
after(() => fleet.stop());

test("the quick start's agent and client run as written", { timeout: 120_000 }, async () => {
  fleet.inboxes.add("crawler-1");
  const env = { ...fleet.env(), RALLY_LOG_LEVEL: "WARNING" };
  const agent = spawn(process.execPath, [join(SDK_ROOT, "dist", "examples", "quickstart-agent.js")], { env, stdio: "inherit" });
  let code: number | null = null;
  const exited = new Promise<void>((res) => agent.once("exit", (c) => { code = c; res(); }));
  try {
    const out = await run(process.execPath, [join(SDK_ROOT, "dist", "examples", "quickstart-client.js")], env, 90_000);
    assert.match(out, /url: 'https:\/\/example\.com'/);
    assert.match(out, /pages: 3/);
  } finally {
    agent.kill("SIGTERM"); // drains, leaves, and the process ends by itself
    await eventually(() => code !== null, 30_000, "agent exit").catch(() => agent.kill("SIGKILL"));
    await exited;
  }
  assert.equal(code, 0);
});
