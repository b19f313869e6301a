#!/usr/bin/env node
// Builds JavaScript policies into cardrules components.
//
//   node tools/js/build.mjs PROGRAM_DIR...
//
// For each program directory: its `policy.js` (an ES module exporting `describe` and
// `evaluate`, importing the SDK as `@cardrules/sdk` and its own files relatively) becomes
// the component its `policy.toml` names (`component = "bergen.wasm"`), built by
// componentize-qjs against world `cardrules:policy/policy@0.2.0` with every WASI import
// stubbed by a trap (`--stub-wasi`) and the non-async runtime (`--sync`), so the component
// imports `cardrules:policy/*@0.2.0` and nothing else.
//
// The sources are evaluated at build time (Wizer snapshot) from a scratch module root
// holding the program directory's `.js` files and `node_modules/@cardrules/sdk`
// (sdk/js): the component reads no file at run time. Run through tools/js/build.sh,
// which installs the pinned toolchain first.

import { componentize } from 'componentize-qjs';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const wit = join(repo, 'wit', '0.2.0');
const sdk = join(repo, 'sdk', 'js');
const WORLD = 'policy';

/** The `component` key of the manifest's top level (before its first table). */
function componentName(manifest) {
  for (const line of manifest.split('\n')) {
    if (/^\s*\[/.test(line)) break;
    const m = line.match(/^\s*component\s*=\s*"([^"]+)"/);
    if (m) return m[1];
  }
  return null;
}

async function build(dir) {
  const program = resolve(dir);
  const manifestPath = join(program, 'policy.toml');
  const entry = join(program, 'policy.js');
  const name = componentName(readFileSync(manifestPath, 'utf8'));
  if (!name) throw new Error(`${manifestPath}: no top-level \`component = "…"\``);
  if (name.includes('/') || !name.endsWith('.wasm')) {
    throw new Error(`${manifestPath}: \`component\` must be a file name ending in .wasm, not ${name}`);
  }
  statSync(entry);

  const root = mkdtempSync(join(tmpdir(), 'cardrules-js-'));
  try {
    const src = join(root, basename(program));
    cpSync(program, src, {
      recursive: true,
      filter: (from) => statSync(from).isDirectory() || from.endsWith('.js') || from.endsWith('.mjs'),
    });
    const pkg = join(root, 'node_modules', '@cardrules', 'sdk');
    cpSync(sdk, pkg, {
      recursive: true,
      filter: (from) => !from.includes('node_modules') && !from.endsWith('.md'),
    });
    const started = performance.now();
    const { component } = await componentize({
      witPath: wit,
      world: WORLD,
      jsSource: readFileSync(entry, 'utf8'),
      jsPath: join(src, 'policy.js'),
      moduleRoot: root,
      stubWasi: true,
      sync: true,
      // Every decision runs on a fresh instance of the build-time snapshot, and one
      // decision allocates little: garbage never outlives it, so collecting it is work
      // for nothing (memory stays bounded by the manifest's `memory-bytes`).
      disableGc: true,
    });
    const out = join(program, name);
    writeFileSync(out, component);
    const ms = Math.round(performance.now() - started);
    console.log(`built ${out} (${component.length} bytes, ${ms} ms)`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const dirs = process.argv.slice(2);
if (dirs.length === 0) {
  console.error('usage: build.mjs PROGRAM_DIR...   (each with policy.toml and policy.js)');
  process.exit(2);
}
let failed = false;
for (const dir of dirs) {
  try {
    await build(dir);
  } catch (e) {
    failed = true;
    console.error(`cannot build ${dir}: ${e?.message ?? e}`);
  }
}
process.exit(failed ? 1 : 0);
