/** The gateway's version, from its package.json. */
import { readFileSync } from 'node:fs';

let version: string | undefined;

/** The version of `@tollgate/gateway` (read once). */
export function gatewayVersion(): string {
  // src/*.ts and the bundled dist/*.js both sit one level below package.json.
  version ??= (
    JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string;
    }
  ).version;
  return version;
}
