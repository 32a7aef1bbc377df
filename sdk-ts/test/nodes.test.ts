// RALLY_AMQP_URL as a node list, no broker: the Python side's two spellings and its errors
// (tests/unit/cluster/test_node_list.py holds the same cases), and the order nodes are tried in.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BrokerConfigError, parseNodes, redact } from "../src/nodes";
import { nodeUrls, settingsFromEnv } from "../src/settings";
import { firstNode, nodeOrder } from "../src/transport";

for (const url of [
  "amqp://u:p@h1:5672,h2:5673,h3:5674/v",
  "amqp://u:p@h1:5672/v,amqp://u:p@h2:5673/v,amqp://u:p@h3:5674/v",
  " amqp://u:p@h1:5672/v , amqp://u:p@h2:5673/v ,amqp://u:p@h3:5674/v ",
]) {
  test(`both spellings name the same nodes: ${url.trim()}`, () => {
    assert.deepEqual(nodeUrls(url), ["amqp://u:p@h1:5672/v", "amqp://u:p@h2:5673/v", "amqp://u:p@h3:5674/v"]);
    assert.equal(parseNodes(url).compact(), "amqp://u:p@h1:5672,h2:5673,h3:5674/v");
  });
}

test("a single URL is one node, kept as written", () => {
  const url = "amqp://guest:guest@127.0.0.1:5672/?heartbeat=2";
  assert.deepEqual(nodeUrls(url), [url]);
  assert.deepEqual(nodeUrls("amqp://guest:guest@127.0.0.1:5672/"), ["amqp://guest:guest@127.0.0.1:5672/"]);
  assert.deepEqual(nodeUrls("amqp://h"), ["amqp://h/"]);
});

test("the vhost and options apply to every node", () => {
  assert.deepEqual(nodeUrls("amqp://u:p@[::1]:5672,h2/my%2Fvhost?reconnect_interval=0.5"), [
    "amqp://u:p@[::1]:5672/my%2Fvhost?reconnect_interval=0.5",
    "amqp://u:p@h2/my%2Fvhost?reconnect_interval=0.5",
  ]);
  assert.deepEqual(nodeUrls("amqps://u:p@h1,h2?heartbeat=5"), ["amqps://u:p@h1/?heartbeat=5", "amqps://u:p@h2/?heartbeat=5"]);
});

const BAD: Array<[string, string]> = [
  ["h1:5672,h2:5672", "is not a URL"],
  ["amqp://u:p@h1/v,h2,h3", "go after the last node"],
  ["amqp://u:p@h1,h2,amqp://u:p@h3", "mixes full URLs"],
  ["amqp://u:p@h1/,amqp://u:q@h2/", "different credentials"],
  ["amqp://u:p@h1/a,amqp://u:p@h2/b", "different vhosts"],
  ["amqp://u:p@h1,,h2/", "empty node"],
  ["amqp://u:p@h1,h2:x/", "not a number"],
  ["amqp://u:p@h1,u:p@h2/", "write them once"],
  ["amqp://u:p@h1;h2/", "not host or host:port"],
  ["amqp://u:p@h1,h1/", "listed twice"],
  ["http://h1/", "scheme"],
  ["", "empty"],
];

for (const [url, problem] of BAD) {
  test(`anything else is a clear error without the password: ${JSON.stringify(url)}`, () => {
    assert.throws(
      () => settingsFromEnv({ url }),
      (err: unknown) => {
        assert.ok(err instanceof BrokerConfigError, String(err));
        assert.ok(err.message.startsWith("RALLY_AMQP_URL: "), err.message);
        assert.ok(err.message.includes(problem), err.message);
        assert.ok(!err.message.replace("user:pass@", "").includes(":p@"), err.message);
        return true;
      },
    );
  });
}

test("the messages are the Python side's, word for word", () => {
  const message = (url: string): string => {
    try {
      parseNodes(url);
    } catch (err) {
      return (err as Error).message;
    }
    return "";
  };
  const tail =
    ". Write one URL (amqp://user:pass@host:5672/vhost) or a cluster as " +
    "amqp://user:pass@h1:5672,h2:5672,h3:5672/vhost or as full URLs separated by commas";
  assert.equal(message("amqp://u:p@h1,h2:x/"), `RALLY_AMQP_URL: node 'h2:x' has port 'x', not a number from 1 to 65535${tail}`);
  assert.equal(message("amqp://u:p@h1/a,amqp://u:p@h2/b"), `RALLY_AMQP_URL: nodes with different vhosts ('/a' and '/b')${tail}`);
  assert.equal(message("h1:5672,h2:5672"), `RALLY_AMQP_URL: 'h1:5672' is not a URL (no scheme://)${tail}`);
  assert.equal(message("http://h1/"), `RALLY_AMQP_URL: scheme 'http' is not one of amqp, amqps${tail}`);
});

test("the environment is read, and a bad list fails before any connection", () => {
  const saved = process.env.RALLY_AMQP_URL;
  try {
    process.env.RALLY_AMQP_URL = "amqp://g:g@a:5672,b:5673/";
    assert.equal(settingsFromEnv().url, "amqp://g:g@a:5672,b:5673/");
    process.env.RALLY_AMQP_URL = "amqp://g:g@a:5672,,b/";
    assert.throws(() => settingsFromEnv(), BrokerConfigError);
  } finally {
    if (saved === undefined) delete process.env.RALLY_AMQP_URL;
    else process.env.RALLY_AMQP_URL = saved;
  }
});

test("nodes are tried from a random start, in the order written, wrapping around", () => {
  assert.deepEqual(nodeOrder(3, 0), [0, 1, 2]);
  assert.deepEqual(nodeOrder(3, 2), [2, 0, 1]);
  assert.deepEqual(nodeOrder(1, 0), [0]);
  assert.equal(firstNode(1, () => 0.99), 0);
  assert.equal(firstNode(3, () => 0), 0);
  assert.equal(firstNode(3, () => 0.5), 1);
  assert.equal(firstNode(3, () => 0.999), 2);
});

test("a URL in a message hides its password", () => {
  assert.equal(redact("amqp://u:secret@h1:5672/v"), "amqp://u:***@h1:5672/v");
  assert.equal(redact("amqp://h1/"), "amqp://h1/");
});
