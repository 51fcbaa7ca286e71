#!/usr/bin/env node
// Plain JavaScript that any Node can parse, so that an old Node gets one clear line instead of a
// SyntaxError. With the compile cache on, a warm start strips no TypeScript: the stripper's wasm
// costs about 17 MB of RSS and 0.1 s per process (src/cli/entry.ts).
import module from 'node:module';
import { existsSync } from 'node:fs';

const NEEDED = [22, 18];
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < NEEDED[0] || (major === NEEDED[0] && minor < NEEDED[1])) {
  process.stderr.write(`dfs needs Node.js ${NEEDED.join('.')} or newer (24 recommended); this is Node.js ${process.versions.node} at ${process.execPath}\n`);
  process.exit(1);
}
module.enableCompileCache?.();
// A checkout runs the TypeScript sources; an installed package (npm pack) has only the
// compiled JavaScript in dist/ (Node refuses to strip types under node_modules).
const fromSource = new URL('../src/cli/entry.ts', import.meta.url);
await import(existsSync(fromSource) ? fromSource.href : new URL('../dist/cli/entry.js', import.meta.url).href);
