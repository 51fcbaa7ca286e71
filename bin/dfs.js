#!/usr/bin/env node
// Plain JavaScript, so that with the compile cache on, a warm start strips no TypeScript: the
// stripper's wasm costs about 17 MB of RSS and 0.1 s per process (src/cli/entry.ts).
import { enableCompileCache } from 'node:module';
enableCompileCache?.();
await import('../src/cli/entry.ts');
