// An agent's registry slot, against the vectors every SDK shares (contracts/vectors/slots.json).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { commandRoutingKey, routingKey, wrap } from "../src/protocol";
import { fnv1a32, registryRoutingKey, SLOTS, slotOf } from "../src/slots";

const ROOT = join(__dirname, "..", "..", "..");

interface SlotVector {
  agent_id: string;
  fnv1a_32: number;
  slot: number;
  heartbeat_routing_key: string;
}

const file = JSON.parse(readFileSync(join(ROOT, "contracts", "vectors", "slots.json"), "utf8")) as {
  slots: number;
  vectors: SlotVector[];
};

test("every slot vector: FNV-1a of the UTF-8 id, its slot and the heartbeat's routing key", () => {
  assert.equal(file.slots, SLOTS);
  assert.ok(file.vectors.length >= 5);
  for (const v of file.vectors) {
    assert.equal(fnv1a32(new TextEncoder().encode(v.agent_id)), v.fnv1a_32, v.agent_id);
    assert.equal(slotOf(v.agent_id), v.slot, v.agent_id);
    assert.equal(registryRoutingKey("Heartbeat", v.agent_id), v.heartbeat_routing_key, v.agent_id);
  }
});

test("ids past ASCII hash their UTF-8 bytes, not UTF-16 code units (figures from contracts/shards.py)", () => {
  // slots.json holds ASCII ids only; these were computed by the Python reference
  const reference: Array<[string, number, number]> = [
    ["agent-\u00e9", 2430708333, 45],
    ["\u30a8\u30fc\u30b8\u30a7\u30f3\u30c8-1", 1941587028, 20],
    ["\u{1f916}", 2853040318, 62],
  ];
  for (const [id, hash, slot] of reference) {
    assert.equal(fnv1a32(new TextEncoder().encode(id)), hash, id);
    assert.equal(slotOf(id), slot, id);
  }
});

test("registry commands carry the agent's slot; every other command keeps <route>.<Type>", () => {
  const id = file.vectors[1]!.agent_id;
  const slot = file.vectors[1]!.slot;
  for (const type of ["RegisterAgent", "Heartbeat", "DeregisterAgent"]) {
    assert.equal(commandRoutingKey(wrap(type, { agent_id: id }, id)), `registry.${type}.${slot}`);
    assert.equal(routingKey(type), `registry.${type}`); // the route alone, as annotations.json gives it
  }
  assert.equal(commandRoutingKey(wrap("ReportTaskStarted", { agent_id: id }, id)), "tasks.ReportTaskStarted");
  assert.equal(commandRoutingKey(wrap("AcquireLease", { agent_id: id }, id)), "allocator.AcquireLease");
  assert.equal(commandRoutingKey(wrap("SubmitTask", {}, "client-1")), "tasks.SubmitTask");
});
