import { defineConfig } from 'vitest/config';

// One root config runs every package as its own project (the honojs/middleware layout).
export default defineConfig({
  test: {
    projects: ['packages/*', 'apps/*'],
    reporters: ['default', './scripts/summary-reporter.ts'],
  },
});
