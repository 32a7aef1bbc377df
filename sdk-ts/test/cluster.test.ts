// A node list and registry slots against the real broker and workers: a dead node in the
// list is passed over, a lost node is left for the next, and registry commands carry the
// agent's slot in their routing key.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Agent, BrokerUnavailable, Client, type Task } from "../src";
import { slotOf } from "../src/slots";
import { Transport } from "../src/transport";
import { AMQP_URL, eventually, FIRST_NODE_URL, Fleet, Proxy, withChannel } from "./fleet";

process.env.RALLY_LOG_LEVEL ??= "WARNING";

const DEAD_NODE = "amqp://guest:guest@127.0.0.1:1/"; // nothing listens on port 1
const fleet = new Fleet();
let client: Client;
const agents: Agent[] = [];
const quiet = (): void => undefined;

function newAgent(prefix: string, url: string): Agent {
  const agent = new Agent(fleet.agentId(prefix), {
    heartbeatIntervalS: 1,
    settings: { url, namespace: fleet.namespace },
  });
  agent.capability("echo", async (task: Task) => ({ echo: task.payload }));
  agents.push(agent);
  return agent;
}

/** The first node's URL with a dead node written before it, in the full-URL spelling. */
function deadFirst(url = FIRST_NODE_URL): string {
  const u = new URL(url);
  u.hostname = "127.0.0.1";
  u.port = "1";
  return `${u.toString()},${url}`;
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

test("a list whose first node is dead still connects, whichever node it starts at", async () => {
  // the start is random: enough connections that the dead node is nearly surely tried first
  for (let i = 0; i < 8; i++) {
    const transport = new Transport(`${DEAD_NODE},${FIRST_NODE_URL}`, "ts-cluster-probe", quiet);
    await transport.connect();
    assert.equal(transport.node, new URL(FIRST_NODE_URL).host);
    await transport.close();
  }
  const agent = newAgent("deadfirst", deadFirst());
  await agent.start();
  const handle = await client.submit("echo", { n: 1 });
  assert.deepEqual(await handle.result({ timeoutS: 30 }), { echo: { n: 1 } });
  await agent.stop();
});

test("a list whose every node is dead fails with each node named and no password", async () => {
  const transport = new Transport("amqp://u:secret@127.0.0.1:1,127.0.0.1:2/", "ts-cluster-probe", quiet);
  await assert.rejects(transport.connect(), (err: unknown) => {
    assert.ok(err instanceof BrokerUnavailable, String(err));
    // from a random start: both nodes, each with why, in either order
    assert.match(err.message, /^cannot reach RabbitMQ at amqp:\/\/u:\*\*\*@127\.0\.0\.1:[12]\/ \(.*ECONNREFUSED.*\); amqp:\/\/u:\*\*\*@127\.0\.0\.1:[12]\/ /);
    assert.ok(err.message.includes("127.0.0.1:1/") && err.message.includes("127.0.0.1:2/"), err.message);
    assert.ok(!err.message.includes("secret"), err.message);
    return true;
  });
});

test("when its node is lost the agent moves to the next one, and work flows again", async () => {
  const nodes = [new Proxy(), new Proxy()];
  const urls = await Promise.all(nodes.map((n) => n.start()));
  try {
    const agent = newAgent("failover", urls.join(","));
    await agent.start();
    const used = nodes.findIndex((n) => n.connections > 0);
    assert.ok(used >= 0, "the agent connects through one of the two nodes");
    const first = await client.submit("echo", { n: 1 });
    assert.deepEqual(await first.result({ timeoutS: 30 }), { echo: { n: 1 } });
    await nodes[used]!.close(); // the node is gone: its connections cut, new ones refused
    const other = nodes[1 - used]!;
    await eventually(() => other.connections > 0, 20_000, "a connection through the other node");
    const second = await client.submit("echo", { n: 2 });
    assert.deepEqual(await second.result({ timeoutS: 30 }), { echo: { n: 2 } });
    await agent.stop();
  } finally {
    for (const n of nodes) await n.close();
  }
});

test("registry commands carry the agent's slot: registry.<Type>.<slot>", async () => {
  const agent = newAgent("slotted", AMQP_URL);
  const slot = slotOf(agent.agentId);
  const tap = `${fleet.namespace}.test.slot-tap`;
  await withChannel(async (ch) => {
    await ch.assertQueue(tap, { durable: false, autoDelete: false });
    for (const type of ["RegisterAgent", "Heartbeat", "DeregisterAgent"]) {
      await ch.bindQueue(tap, `${fleet.namespace}.commands`, `registry.${type}.${slot}`);
    }
  });
  try {
    await agent.start();
    await eventually(async () => (await tapped(tap)).includes("Heartbeat"), 20_000, "a heartbeat on the slotted key");
    await agent.stop();
    const seen = await tapped(tap);
    for (const type of ["RegisterAgent", "Heartbeat", "DeregisterAgent"]) assert.ok(seen.includes(type), seen.join(","));
  } finally {
    await withChannel((ch) => ch.deleteQueue(tap));
  }
});

const tappedTypes: string[] = [];
/** Every message type the tap queue has received so far (read and acked as it goes). */
async function tapped(queue: string): Promise<string[]> {
  await withChannel(async (ch) => {
    for (;;) {
      const msg = await ch.get(queue, { noAck: true });
      if (msg === false) break;
      tappedTypes.push(String(msg.properties.type));
    }
  });
  return tappedTypes;
}
