// Pure codecs and rules, no broker: the bundle codec against the published test vectors.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { BundleTooLarge, decodeBundle, encodeBundle } from "../src/bundle";
import { renewDelayMs } from "../src/lease";
import { parseEnvelope, routingKey, type TaskView, wrap } from "../src/protocol";
import { QueryBook } from "../src/queries";
import { nodeUrls } from "../src/settings";

const ROOT = join(__dirname, "..", "..", "..");

interface Vector {
  name: string;
  body: string;
  verdict: string;
  max_members?: number;
  members?: Array<{ id?: string; type?: string; cid?: string; verdict: string }>;
}

test("the bundle codec reaches the verdict of every published bundle vector", () => {
  const file = JSON.parse(readFileSync(join(ROOT, "contracts", "vectors", "bundles.json"), "utf8")) as { vectors: Vector[] };
  assert.ok(file.vectors.length > 0);
  for (const v of file.vectors) {
    const raw = Buffer.from(v.body, "utf8");
    const limits = v.max_members !== undefined ? { maxMembers: v.max_members } : {};
    if (v.verdict === "ok") {
      const members = decodeBundle(raw, limits);
      assert.equal(members.length, v.members?.length, v.name);
      members.forEach((m, i) => {
        const expected = v.members![i]!;
        assert.equal(m.messageId, expected.id ?? undefined, v.name);
        assert.equal(m.type, expected.type ?? undefined, v.name);
        assert.equal(m.correlationId, expected.cid ?? undefined, v.name);
        let verdict = "ok";
        try {
          parseEnvelope(m.body);
        } catch {
          verdict = "malformed";
        }
        if (expected.verdict === "malformed") assert.equal(verdict, "malformed", v.name);
      });
    } else {
      assert.throws(() => decodeBundle(raw, limits), (err: Error) => (v.verdict === "too_large") === err instanceof BundleTooLarge, v.name);
    }
  }
});

test("a bundle encodes and decodes to the same members, bodies byte for byte", () => {
  const bodies = [Buffer.from('{"a":1}\n{"b":2}'), Buffer.from("é\n"), Buffer.alloc(0)];
  const encoded = encodeBundle(bodies.map((body, i) => ({ body, messageId: `m${i}`, type: "T", headers: i === 1 ? { traceparent: "x" } : {} })));
  const decoded = decodeBundle(encoded);
  assert.deepEqual(decoded.map((m) => m.body), bodies);
  assert.deepEqual(decoded[1]!.headers, { traceparent: "x" });
  assert.equal(decoded[0]!.correlationId, undefined);
});

test("an envelope carries a required id and sent_at, and a report keeps its notice's lineage", () => {
  const notice = wrap("AssignTask", { task_id: "t" }, "tasks");
  assert.equal(notice.correlation_id, notice.id);
  const report = wrap("ReportTaskStarted", {}, "agent-1", notice);
  assert.equal(report.correlation_id, notice.correlation_id);
  assert.equal(report.causation_id, notice.id);
  assert.match(report.id, /^[0-9a-f-]{36}$/);
  assert.ok(!Number.isNaN(Date.parse(report.sent_at)));
  assert.equal(routingKey("ReportTaskStarted"), "tasks.ReportTaskStarted");
  assert.equal(routingKey("Heartbeat"), "registry.Heartbeat");
  assert.equal(routingKey("RenewLease"), "allocator.RenewLease");
  assert.throws(() => parseEnvelope(Buffer.from('{"type":"AssignTask","payload":{}}')));
});

test("leases renew at a third of the TTL, sooner when the grant runs out earlier", () => {
  assert.equal(renewDelayMs(30, undefined), 10_000);
  const now = Date.now();
  assert.equal(renewDelayMs(30, new Date(now + 6000), now), 3000);
  assert.equal(renewDelayMs(0.01, undefined), 50);
});

test("a cluster URL lists its nodes with the shared credentials and vhost", () => {
  assert.deepEqual(nodeUrls("amqp://u:p@h1:5672,h2:5673/v"), ["amqp://u:p@h1:5672/v", "amqp://u:p@h2:5673/v"]);
  assert.deepEqual(nodeUrls("amqp://a/,amqp://b/"), ["amqp://a/", "amqp://b/"]);
  assert.deepEqual(nodeUrls("amqp://guest:guest@127.0.0.1:5672/"), ["amqp://guest:guest@127.0.0.1:5672/"]);
});

test("an answer goes to the query it names as its cause, once; an unasked or forgotten one is unclaimed", async () => {
  const book = new QueryBook();
  const view: TaskView = { task_id: "t", found: false };
  const answer = book.expect("q1");
  assert.equal(book.answer("q2", view), false);
  assert.equal(book.answer(null, view), false);
  assert.equal(book.answer("q1", view), true);
  assert.equal(await answer, view);
  assert.equal(book.answer("q1", view), false);
  void book.expect("q3");
  book.forget("q3");
  assert.equal(book.answer("q3", view), false);
  assert.equal(book.size, 0);
});
