// The SDK against the real broker and the real workers (`rally worker all`, private namespace).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Agent, Client, TaskCancelledError, TaskError, type Task, wrap } from "../src";
import { earlierInboxArguments, inboxArguments, Names } from "../src/protocol";
import { sleep } from "../src/transport";
import { AMQP_URL, eventually, Fleet, Proxy, withChannel } from "./fleet";

process.env.RALLY_LOG_LEVEL ??= "WARNING";

const fleet = new Fleet({ RALLY_RESOURCES: "gpu=1" });
let client: Client;
const agents: Agent[] = [];

function newAgent(prefix: string, options: ConstructorParameters<typeof Agent>[1] = {}): Agent {
  const agent = new Agent(fleet.agentId(prefix), {
    heartbeatIntervalS: 1,
    drainTimeoutS: 30,
    ...options,
    settings: { url: AMQP_URL, namespace: fleet.namespace, ...options.settings },
  });
  agents.push(agent);
  return agent;
}

before(async () => {
  await fleet.start();
  client = await Client.connect({ settings: { url: AMQP_URL, namespace: fleet.namespace } });
});

after(async () => {
  for (const agent of agents) await agent.stop().catch(() => undefined);
  await client?.close();
  await fleet.stop();
});

test("a task goes round trip: assigned, progress reported, result back to the client", async () => {
  const agent = newAgent("echo");
  agent.capability("echo", async (task: Task) => {
    task.progress(0.5, "half way");
    await sleep(50);
    return { echo: task.payload, attempt: task.attempt };
  });
  await agent.start();
  const handle = await client.submit("echo", { n: 7 });
  assert.deepEqual(await handle.result({ timeoutS: 30 }), { echo: { n: 7 }, attempt: 1 });
  const types = (await fleet.history(handle.taskId)).map((e) => e.type);
  assert.ok(types.includes("TaskProgressed"), types.join(","));
  assert.ok(types.indexOf("TaskStarted") < types.indexOf("TaskSucceeded"), types.join(","));
  await agent.stop();
});

test("a failed attempt is retried and the retry's success is the result; a non-retryable failure ends dead", async () => {
  const agent = newAgent("flaky");
  const attempts: number[] = [];
  agent.capability("flaky", async (task: Task) => {
    attempts.push(task.attempt);
    if (task.payload.fatal) throw new TaskError("cannot ever work", { retryable: false });
    if (task.attempt === 1) throw new Error("first try fails");
    return { attempt: task.attempt };
  });
  await agent.start();
  const result = await client.submit("flaky", {}, { backoff: { initial_s: 0.1 }, maxAttempts: 3 }).result({ timeoutS: 30 });
  assert.deepEqual(result, { attempt: 2 });
  const dead = await client.submit("flaky", { fatal: true }, { maxAttempts: 3 });
  await assert.rejects(dead.result({ timeoutS: 30 }), (err: Error) => err.name === "TaskFailedError" && /cannot ever work/.test(err.message));
  assert.deepEqual(attempts, [1, 2, 1]);
  await agent.stop();
});

test("assignments that arrive as one bundle are split and each one runs", async () => {
  const count = 30;
  // submitted before the agent exists: it is then placed all at once, in bundles
  const submissions = Array.from({ length: count }, (_, i) => client.submit("bulk", { i }));
  const handles = await Promise.all(submissions);
  const agent = newAgent("bulk", { capacity: count });
  agent.capability("bulk", async (task: Task) => ({ i: task.payload.i }));
  await agent.start();
  const results = await Promise.all(handles.map((h) => h.result({ timeoutS: 30 })));
  assert.deepEqual(results, Array.from({ length: count }, (_, i) => ({ i })));
  assert.ok(agent.stats.bundles >= 1, JSON.stringify(agent.stats));
  await agent.stop();
});

test("cancelling a running task sends StopTask: the handler's signal aborts and the slot is free again", async () => {
  const agent = newAgent("stoppable", { capacity: 1 });
  let aborted = false;
  let started = false;
  agent.capability("slow", async (task: Task) => {
    if (task.payload.quick) return "quick";
    started = true;
    await new Promise<void>((res) => task.signal.addEventListener("abort", () => res(), { once: true }));
    aborted = true;
    return "should not count";
  });
  await agent.start();
  const handle = await client.submit("slow", {});
  await eventually(() => started, 20_000, "task started");
  await handle.cancel("test cancels");
  await assert.rejects(handle.result({ timeoutS: 30 }), TaskCancelledError);
  await eventually(() => aborted, 10_000, "signal aborted");
  assert.equal(await client.submit("slow", { quick: true }).result({ timeoutS: 30 }), "quick");
  const types = (await fleet.history(handle.taskId)).map((e) => e.type);
  assert.ok(!types.includes("TaskSucceeded"), types.join(","));
  await agent.stop();
});

test("a lease is acquired, renewed past its TTL, survives a loss notice for another token, and is released", async () => {
  const events: string[] = [];
  const agent = newAgent("leaser", { logger: (_level, event) => void events.push(event) });
  agent.capability("lease", async (task: Task) => {
    const lease = await task.lease("gpu", { ttlS: 1.5, timeoutS: 10 });
    const token = lease.fencingToken;
    // a LeaseLost naming another token is not about this lease: it stays held and renewed
    const notice = wrap("LeaseLost", { resource: "gpu", lease_id: lease.leaseId, fencing_token: token + 1000, reason: "test" }, "test");
    await withChannel(async (ch) => {
      ch.publish(`${fleet.namespace}.inbox`, task.agentId, Buffer.from(JSON.stringify(notice)), {
        messageId: notice.id, type: "LeaseLost", contentType: "application/json", userId: "guest", deliveryMode: 2,
      });
      await sleep(100);
    });
    await sleep(3500); // more than twice the TTL: only renewals keep it
    lease.check();
    lease.release();
    // released: the one gpu is free for the next acquire at once
    const again = await task.withLease("gpu", async (l) => l.fencingToken, { ttlS: 5, timeoutS: 10 });
    return { token, again, lost: lease.lost };
  });
  await agent.start();
  const result = (await client.submit("lease", {}).result({ timeoutS: 40 })) as { token: number; again: number; lost: boolean };
  assert.equal(result.lost, false);
  assert.ok(result.again > result.token, JSON.stringify(result));
  assert.ok(events.includes("sdk.lease_lost_ignored"), events.join(","));
  await agent.stop();
});

test("a drain lets running tasks finish at their first attempt, then the agent leaves", async () => {
  // a slow heartbeat: the registry must not rely on one counting the running tasks
  const agent = newAgent("drainer", { capacity: 2, heartbeatIntervalS: 30 });
  agent.capability("drain", async () => {
    await sleep(1500);
    return "done";
  });
  await agent.start();
  const handles = await Promise.all([client.submit("drain", { a: 1 }), client.submit("drain", { a: 2 })]);
  await eventually(() => agent.load === 2, 20_000, "both tasks running");
  await agent.stop();
  for (const h of handles) {
    const outcome = await h.outcome({ timeoutS: 30 });
    assert.equal(outcome.state, "succeeded");
    assert.equal(outcome.attempt, 1);
  }
});

test("a connection dropped mid-task comes back: the inbox is consumed again and the task ends once", async () => {
  const proxy = new Proxy();
  const url = await proxy.start();
  try {
    const agent = newAgent("dropper", { settings: { url } });
    const runs: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((res) => (release = res));
    agent.capability("drop", async (task: Task) => {
      runs.push(task.attempt);
      if (task.payload.wait) await gate;
      return { attempt: task.attempt };
    });
    await agent.start();
    const handle = await client.submit("drop", { wait: true });
    await eventually(() => runs.length === 1, 20_000, "task started");
    assert.ok(proxy.cut() > 0);
    await sleep(300);
    release(); // the result is reported while the connection is still coming back
    const outcome = await handle.outcome({ timeoutS: 40 });
    assert.equal(outcome.state, "succeeded");
    assert.deepEqual(runs, [1]);
    assert.deepEqual(await client.submit("drop", {}).result({ timeoutS: 30 }), { attempt: 1 });
    const types = (await fleet.history(handle.taskId)).map((e) => e.type);
    assert.equal(types.filter((t) => t === "TaskSucceeded").length, 1, types.join(","));
    await agent.stop();
  } finally {
    await proxy.close();
  }
});

/** Messages ready in `queue`; undefined if it does not exist. */
async function depth(queue: string): Promise<number | undefined> {
  return withChannel((ch) => ch.checkQueue(queue)).then(
    (ok) => ok.messageCount,
    () => undefined,
  );
}

/** Whether durable `queue` exists with exactly `args` (a redeclare with others is refused). */
async function hasArguments(queue: string, args: Record<string, unknown>): Promise<boolean> {
  return withChannel((ch) => ch.assertQueue(queue, { durable: true, arguments: args })).then(
    () => true,
    () => false,
  );
}

/** A delivery that is not JSON, into the agent's inbox: the agent rejects it without requeue. */
async function publishBad(agentId: string): Promise<void> {
  await withChannel(async (ch) => {
    ch.publish(`${fleet.namespace}.inbox`, agentId, Buffer.from("{not JSON"));
    await sleep(100); // the publish is out before the connection closes
  });
}

test("a new inbox is classic version 1 and dead-letters to the DLQ every inbox shares", async () => {
  const names = new Names(fleet.namespace);
  const agent = newAgent("fresh");
  agent.capability("fresh", async () => "served");
  await agent.start();
  const inbox = names.inboxQueue(agent.agentId);
  assert.ok(await hasArguments(inbox, inboxArguments(names)));
  assert.equal(await hasArguments(inbox, earlierInboxArguments(names, agent.agentId)[0]!), false);
  const before = (await depth(names.inboxDlq)) ?? -1;
  assert.ok(before >= 0, "the shared DLQ is declared with the inbox");
  await publishBad(agent.agentId);
  await eventually(async () => (await depth(names.inboxDlq)) === before + 1, 10_000, "dead-lettered to ns.inboxes.dlq");
  assert.equal(await depth(`${inbox}.dlq`), undefined); // no DLQ of its own
  assert.equal(await client.submit("fresh", {}).result({ timeoutS: 30 }), "served");
  await agent.stop();
});

test("an inbox an earlier release created as classic version 2 with its own DLQ is kept and works", async () => {
  const names = new Names(fleet.namespace);
  const agent = newAgent("classic-v2");
  const inbox = names.inboxQueue(agent.agentId);
  const earlier = earlierInboxArguments(names, agent.agentId)[0]!;
  assert.deepEqual([earlier["x-queue-version"], earlier["x-dead-letter-routing-key"]], [2, inbox]);
  await withChannel((ch) => ch.assertQueue(inbox, { durable: true, arguments: earlier }));
  agent.capability("classic-v2", async () => "still served");
  await agent.start();
  assert.ok(await hasArguments(inbox, earlier)); // kept as it was
  assert.equal(await client.submit("classic-v2", {}).result({ timeoutS: 30 }), "still served");
  const shared = (await depth(names.inboxDlq)) ?? 0;
  await publishBad(agent.agentId);
  await eventually(async () => (await depth(`${inbox}.dlq`)) === 1, 10_000, "dead-lettered to its own DLQ");
  assert.equal((await depth(names.inboxDlq)) ?? 0, shared); // nothing went to the shared one
  await agent.stop();
});

test("an inbox an earlier release created as a quorum queue is taken as it is", async () => {
  const agent = newAgent("upgraded");
  const quorum = earlierInboxArguments(new Names(fleet.namespace), agent.agentId).find((a) => a["x-queue-type"] === "quorum")!;
  await withChannel((ch) => ch.assertQueue(`${fleet.namespace}.inbox.${agent.agentId}`, { durable: true, arguments: quorum }));
  agent.capability("upgraded", async () => "still served");
  await agent.start();
  assert.equal(await client.submit("upgraded", {}).result({ timeoutS: 30 }), "still served");
  await agent.stop();
});

test("a client reads a task's state and history over the broker (QueryTask answered by TaskView)", async () => {
  const agent = newAgent("query");
  agent.capability("query", async (task: Task) => {
    task.progress(0.5, "half way");
    return { done: task.payload };
  });
  await agent.start();
  const handle = await client.submit("query", { n: 3 });
  assert.deepEqual(await handle.result({ timeoutS: 30 }), { done: { n: 3 } });
  const view = await client.view(handle);
  assert.equal(view.task_id, handle.taskId);
  assert.equal(view.found, true);
  assert.equal(view.state, "succeeded");
  assert.equal(view.capability, "query");
  assert.equal(view.agent_id, agent.agentId);
  assert.deepEqual(view.result, { done: { n: 3 } });
  const types = (await client.history(handle.taskId)).map((e) => e.type);
  assert.deepEqual([types[0], types[types.length - 1]], ["TaskSubmitted", "TaskSucceeded"]);
  assert.ok(types.includes("TaskProgressed"), types.join(","));
  const state = await client.state(handle.taskId);
  assert.equal(state?.state, "succeeded");
  assert.deepEqual(state?.timeline ?? [], []); // asked without the timeline
  assert.equal(await client.state("00000000-0000-4000-8000-000000000000"), null);
  await agent.stop();
});
