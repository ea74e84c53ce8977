import { copyFile } from 'node:fs/promises';
import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/testing/index.ts'],
  format: ['esm'],
  target: 'node20',
  dts: true,
  sourcemap: true,
  clean: true,
  // The fake llama-server is a program that tests run with `node`, not a module to bundle.
  async onSuccess() {
    await copyFile('src/testing/fake-llama-server.mjs', 'dist/testing/fake-llama-server.mjs');
  },
});
