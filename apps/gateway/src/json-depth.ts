/**
 * A bound on how deeply a request body may nest. JSON.parse reads any depth, but what the
 * gateway does next with a body (serialize it for the upstream, estimate tokens from its
 * tools, translate Ollama fields) recurses, and a few thousand levels overflow the stack.
 */
import { TollgateError } from '@tollgate/protocol';

/** Deepest nesting of arrays and objects a request body may have (the body itself is 1). */
export const MAX_JSON_DEPTH = 128;

/**
 * Refuses a parsed JSON body that nests arrays and objects deeper than `maxDepth`. Walks the
 * value without recursion, so the check itself cannot overflow.
 *
 * @throws {TollgateError} `invalid_json` (400).
 * @example
 * ```ts
 * const body: unknown = JSON.parse(text);
 * checkJsonDepth(body); // throws for [[[[...]]]] 129 levels deep
 * ```
 */
export function checkJsonDepth(value: unknown, maxDepth = MAX_JSON_DEPTH): void {
  if (typeof value !== 'object' || value === null) return;
  const pending: Array<[object, number]> = [[value, 1]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [node, depth] = next;
    if (depth > maxDepth) {
      throw new TollgateError(
        'invalid_json',
        `The request body nests arrays and objects more than ${maxDepth} levels deep; send a flatter body.`,
      );
    }
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      if (typeof child === 'object' && child !== null) pending.push([child, depth + 1]);
    }
  }
}

/**
 * Parses a request body's JSON text, refusing an empty body, text that is not JSON and a
 * body nested deeper than {@link MAX_JSON_DEPTH}.
 *
 * @throws {TollgateError} `invalid_json` (400) saying which.
 */
export function parseJsonText(text: string): unknown {
  if (text.trim() === '') {
    throw new TollgateError(
      'invalid_json',
      'The request body is empty. Send a JSON object, e.g. {"model": "...", "messages": [...]}.',
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new TollgateError(
      'invalid_json',
      `The request body is not valid JSON (${(error as Error).message}).`,
    );
  }
  checkJsonDepth(body);
  return body;
}
