// The JSON Schema `rally schema` writes, in a strict draft 2020-12 validator (Ajv, strict
// mode): every file compiles, and the published envelope vectors get their verdicts.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import Ajv2020 from "ajv/dist/2020";
import addFormats from "ajv-formats";
import { RALLY_BIN, REPO_ROOT } from "./fleet";

interface EnvelopeVector {
  name: string;
  body: string;
  verdict: string;
}

function writtenSchemas(): string {
  const dir = mkdtempSync(join(tmpdir(), "rally-schema-"));
  execFileSync(RALLY_BIN, ["schema", "--out", dir], { stdio: "ignore" });
  return dir;
}

test("every schema rally writes compiles in Ajv's strict mode, and the vectors agree", () => {
  const dir = writtenSchemas();
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats(ajv);
  const files = readdirSync(dir).filter((f) => f.endsWith(".schema.json"));
  assert.ok(files.length > 40, `only ${files.length} schema files`);
  const schemas = files.map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")) as { $id?: string });
  for (const schema of schemas) ajv.addSchema(schema);
  for (const schema of schemas) assert.doesNotThrow(() => ajv.getSchema(schema.$id ?? ""), schema.$id);
  const protocol = ajv.getSchema(
    (JSON.parse(readFileSync(join(dir, "protocol.schema.json"), "utf8")) as { $id: string }).$id,
  );
  assert.ok(protocol);
  const vectors = (
    JSON.parse(readFileSync(join(REPO_ROOT, "contracts", "vectors", "envelopes.json"), "utf8")) as {
      vectors: EnvelopeVector[];
    }
  ).vectors;
  let checked = 0;
  for (const v of vectors) {
    let body: unknown;
    try {
      body = JSON.parse(v.body);
    } catch {
      continue; // malformed: not JSON, nothing for a schema to say
    }
    const valid = protocol(body);
    if (v.verdict === "ok") {
      assert.ok(valid, `${v.name}: ${JSON.stringify(protocol.errors)}`);
      checked += 1;
    } else if (v.verdict === "invalid") {
      assert.ok(!valid, `${v.name} passed the schema`);
      // one bad field: a handful of errors, not hundreds
      assert.ok((protocol.errors?.length ?? 0) <= 5, `${v.name}: ${protocol.errors?.length} errors`);
      checked += 1;
    }
  }
  assert.ok(checked >= 3, `only ${checked} vectors checked`);
});
