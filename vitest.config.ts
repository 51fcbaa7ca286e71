import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Chaos tests kill real processes and take minutes; they run through `npm run chaos`.
    exclude: ['test/chaos/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Each test process gets its own empty DFS_CONFIG_DIR (logins): never the real ~/.config/dfs.
    setupFiles: ['test/support/config-dir-setup.ts'],
    // An unhandled rejection or uncaught exception fails the run (vitest's default, kept on
    // purpose: a stray timeout rejection is how `dfs status` crashed on a stopped master).
    // Vitest only reports one while its own listener is the only one: code that tests import
    // must not add process 'unhandledRejection'/'uncaughtException' listeners (cli/entry.ts,
    // the one place that does, is the bin's and never imported by tests).
    dangerouslyIgnoreUnhandledErrors: false,
  },
});
