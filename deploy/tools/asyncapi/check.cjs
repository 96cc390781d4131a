#!/usr/bin/env node
// Parse an AsyncAPI document with the AsyncAPI project's own parser (@asyncapi/parser, pinned in
// package.json beside this file and installed into var/tools/asyncapi by deploy/tools/install.sh).
//
//   node deploy/tools/asyncapi/check.cjs FILE [MODULES_DIR]
//
// Prints every diagnostic as one JSON line {"severity", "code", "message", "path"} and exits 0 only
// when the document parsed with no error and no warning (infos and hints are printed, not counted),
// 1 otherwise, 2 on bad usage.
"use strict";
const fs = require("fs");
const path = require("path");

const [file, modules] = process.argv.slice(2);
if (!file) {
  console.error("usage: check.cjs FILE [MODULES_DIR]");
  process.exit(2);
}
const root = path.resolve(__dirname, "..", "..", "..");
const where = modules || process.env.ASYNCAPI_MODULES || path.join(root, "var", "tools", "asyncapi", "node_modules");
const { Parser } = require(require.resolve("@asyncapi/parser", { paths: [where] }));
const SEVERITY = ["error", "warning", "info", "hint"];

async function main() {
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(fs.readFileSync(file, "utf8"), { source: path.resolve(file) });
  for (const d of diagnostics) {
    console.log(JSON.stringify({ severity: SEVERITY[d.severity] || String(d.severity), code: d.code,
                                 message: d.message, path: (d.path || []).join(".") }));
  }
  if (!document) console.log(JSON.stringify({ severity: "error", code: "no-document", message: "not parsed" }));
  const counted = diagnostics.filter((d) => d.severity === 0 || d.severity === 1);
  process.exit(document && counted.length === 0 ? 0 : 1);
}

main().catch((err) => {
  console.log(JSON.stringify({ severity: "error", code: "exception", message: String(err && err.stack || err) }));
  process.exit(1);
});
