/**
 * The conformance contract on the TypeScript SDK (docs/protocol.md, "Checking an
 * implementation"): `rally conformance --agent-cmd "node sdk-ts/dist/examples/conformance-agent.js"`.
 * One capability whose behaviour the task payload drives: report each `progress`
 * fraction, wait `seconds` (a StopTask ends the wait and the attempt), then succeed with
 * `result` or fail with `error`. SIGTERM drains, then the process exits 0.
 */
import { Agent, type Task, TaskError } from "../src";

function wait(seconds: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, seconds * 1000);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

async function conformance(task: Task): Promise<unknown> {
  const payload: Record<string, any> = typeof task.payload === "object" && task.payload !== null ? task.payload : {};
  for (const fraction of payload.progress ?? []) task.progress(Number(fraction), `at ${fraction}`);
  await wait(Number(payload.seconds ?? 0), task.signal);
  if (task.signal.aborted) return null; // stopped: the SDK reports nothing more for it
  if ((payload.action ?? "succeed") === "fail") {
    throw new TaskError(String(payload.error ?? "failed on request"), { retryable: payload.retryable === undefined ? true : Boolean(payload.retryable) });
  }
  return payload.result ?? null;
}

const env = process.env;
const agent = new Agent(env.RALLY_AGENT_ID ?? "conformance-ts", {
  capacity: Number(env.RALLY_CAPACITY ?? "1"),
  heartbeatIntervalS: Number(env.RALLY_HEARTBEAT_S ?? "5"),
  softwareVersion: "conformance-ts",
});
agent.capability(env.RALLY_CONFORMANCE_CAPABILITY ?? "conformance", conformance);
agent.run().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`conformance agent failed: ${String(err)}\n`);
    process.exit(1);
  },
);
