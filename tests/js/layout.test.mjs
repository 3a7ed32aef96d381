// The client library's boundary (node --test): web/static/js/arbiter/ is one
// self-contained folder that imports nothing outside it (only msgpack, lazily,
// by its bare name) and nothing of three.js or the demo; the entry module
// exports every module's public names.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const LIB = fileURLToPath(new URL("../../web/static/js/arbiter/", import.meta.url));
const IMPORT = /\b(?:import|export)\s*(?:[^"'`;]*?\bfrom\s*)?["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']\s*\)/g;

const COMMENT = /\/\*[\s\S]*?\*\/|(^|[^:])\/\/.*$/gm;

function specifiers(file) {
  const code = readFileSync(LIB + file, "utf8").replace(COMMENT, "$1");
  return [...code.matchAll(IMPORT)].map((m) => m[1] ?? m[2]);
}

const files = readdirSync(LIB).filter((f) => f.endsWith(".js"));

test("the library imports only its own files (and msgpack, lazily)", () => {
  assert.ok(files.includes("index.js") && files.length >= 9, files.join(" "));
  for (const file of files) {
    for (const spec of specifiers(file)) {
      const ok = /^\.\/[\w-]+\.js$/.test(spec) && files.includes(spec.slice(2));
      assert.ok(ok || spec === "@msgpack/msgpack", `${file} imports ${spec}`);
    }
    // Not even a comment points outside the folder (no "../": the repository stands on its own).
    assert.doesNotMatch(readFileSync(LIB + file, "utf8"), /\.\.\//, `${file} points outside its folder`);
  }
});

test("the entry module re-exports every library module's exports", async () => {
  const entry = await import(LIB + "index.js");
  for (const file of files.filter((f) => f !== "index.js")) {
    const mod = await import(LIB + file);
    for (const name of Object.keys(mod)) {
      if (file === "movement.js" && name === "clamp") continue; // a helper, not API
      assert.equal(entry[name], mod[name], `index.js does not export ${name} of ${file}`);
    }
  }
});
