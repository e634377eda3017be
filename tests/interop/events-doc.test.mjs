// Runs every example of docs/EVENTS.md against a fresh server (the format:
// "How the examples are written (and run)" in that file), one node:test
// test per example, named by its section and position, so a failure says
// which example and which step. Then tests the runner itself: the pattern
// matcher, and examples that are wrong on purpose must fail.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { match, parseExamples, runExample, substitute } from "./events-doc.mjs";
import { REPO_ROOT } from "./server.mjs";

const DOC = path.join(REPO_ROOT, "docs/EVENTS.md");
const examples = parseExamples(readFileSync(DOC, "utf8"));
const EXAMPLE_TIMEOUT_MS = 30_000;

describe("docs/EVENTS.md examples", { concurrency: 2 }, () => {
  test("the document has examples", () => {
    assert.ok(examples.length > 0, "no ```example block in docs/EVENTS.md");
  });
  for (const example of examples) {
    test(example.name, { timeout: EXAMPLE_TIMEOUT_MS }, () => runExample(example));
  }
});

describe("the examples runner itself", () => {
  test("patterns: objects may have more keys, arrays match item by item, * and $name", () => {
    const vars = {};
    assert.equal(match({ ok: true }, { ok: true, extra: 1 }, vars), null);
    assert.match(match({ ok: true, id: "*" }, { ok: true }, vars), /id: expected something/);
    assert.equal(match({ id: "*" }, { id: null }, vars), null, "* matches null when present");
    assert.match(match([1, 2], [1, 2, 3], vars), /expected 2 items/);
    assert.match(match([{ a: 1 }], [{ a: 2 }], vars), /\[0\]\.a: expected 1, got 2/);
    assert.equal(match({ id: "$id" }, { id: 7 }, vars), null);
    assert.equal(vars.$id, 7);
    assert.equal(match(["$id"], [7], vars), null);
    assert.match(match({ other: "$id" }, { other: 8 }, vars), /expected \$id = 7, got 8/);
    assert.match(match({ a: { b: "x" } }, { a: "x" }, vars), /a: expected an object/);
    assert.match(match("x", "y", vars), /expected "x", got "y"/);
    assert.match(match(1, "1", vars), /expected 1, got "1"/);
    assert.deepEqual(substitute({ ids: ["$id", 2], n: "$id" }, vars), { ids: [7, 2], n: 7 });
    assert.throws(() => substitute(["$nope"], vars), /\$nope is not bound/);
  });

  test("parsing: sections, positions, lines and bad steps", () => {
    const parsed = parseExamples(
      [
        "## /a",
        "```example",
        '{"as": "u/1", "ns": "/a", "emit": "x", "args": [], "ack": {}}',
        "```",
        "```js",
        "not an example",
        "```",
        "### sub",
        "```example",
        '{"as": "u/1", "ns": "/a", "emit": "x"}',
        "```",
        "## /b",
        "```example",
        "{not json}",
        "```",
        "```example",
        '{"as": "u/1", "ns": "/b", "receive": "x", "data": {}, "extra": 1}',
        "```",
      ].join("\n"),
      "T.md",
    );
    assert.deepEqual(
      parsed.map((e) => e.name),
      [
        "/a — example 1 (T.md:2)",
        "/a › sub — example 2 (T.md:9)",
        "/b — example 1 (T.md:13)",
        "/b — example 2 (T.md:16)",
      ],
    );
    assert.equal(parsed[0].error, undefined);
    assert.equal(parsed[0].steps[0].line, 3);
    assert.match(parsed[1].error, /line 10: an emit step needs "ack"/);
    assert.match(parsed[2].error, /line 14: not JSON/);
    assert.match(parsed[3].error, /line 17: unknown key\(s\) extra/);
  });

  const doc = (steps) => parseExamples(["## self-test", "```example", ...steps, "```"].join("\n"))[0];
  const right = [
    '{"as": "alice/1", "ns": "/notifications", "receive": "unread", "data": {"count": 0}}',
    '{"http": "POST /api/v1/notifications", "body": {"users": ["alice"], "type": "t", "title": "Hi"}, "status": 200, "response": {"ok": true, "stored": 1}}',
    '{"as": "alice/1", "ns": "/notifications", "receive": "notification", "data": {"notification": {"id": "$n", "title": "Hi"}, "unread": 1}}',
    '{"as": "alice/2", "ns": "/notifications", "connect": true}',
    '{"as": "alice/2", "ns": "/notifications", "receive": "unread", "data": {"count": 1}}',
    '{"as": "alice/2", "ns": "/notifications", "emit": "read", "args": [{"ids": ["$n"]}], "ack": {"ok": true, "ids": ["$n"]}}',
    '{"as": "alice/1", "ns": "/notifications", "receive": "notification:read", "data": {"ids": ["$n"]}}',
    '{"as": "alice/1", "ns": "/notifications", "silent": "notification"}',
  ];

  test("a right example passes", { timeout: EXAMPLE_TIMEOUT_MS }, () => runExample(doc(right)));

  const wrong = [
    ["a wrong ack", 5, '{"as": "alice/2", "ns": "/notifications", "emit": "read", "args": [{"ids": ["$n"]}], "ack": {"ok": false}}', /line 8 .*ack of "read": ok: expected false, got true/],
    ["a wrong event payload", 2, '{"as": "alice/1", "ns": "/notifications", "receive": "notification", "data": {"unread": 2}}', /"notification": unread: expected 2, got 1/],
    ["an event that never comes", 6, '{"as": "alice/2", "ns": "/notifications", "receive": "notification:read", "data": {}}', /no "notification:read" within/],
    // The `unread` after the read follows `notification:read` on that
    // socket: once it is taken, the other has arrived, however slow the
    // machine.
    ["an event that should not have come", { 6: '{"as": "alice/1", "ns": "/notifications", "receive": "unread", "data": {"count": 0}}', 7: '{"as": "alice/1", "ns": "/notifications", "silent": "notification:read"}' }, /expected no "notification:read"/],
    ["a wrong status", 1, '{"http": "POST /api/v1/notifications", "body": {"users": []}, "status": 200}', /status 422, expected 200/],
    ["an unknown event", 5, '{"as": "alice/2", "ns": "/notifications", "emit": "nope", "args": [], "ack": {"ok": true}}', /ok: expected true, got false/],
  ];
  for (const [what, index, step, error] of wrong.map((w) => (w.length === 3 ? [w[0], w[1], null, w[2]] : w))) {
    test(`fails on ${what}`, { timeout: EXAMPLE_TIMEOUT_MS }, async () => {
      const steps = [...right];
      if (step === null) Object.assign(steps, index);
      else steps[index] = step;
      await assert.rejects(runExample(doc(steps)), error);
    });
  }
});
