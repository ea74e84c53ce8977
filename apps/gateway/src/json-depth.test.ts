import { describe, expect, it } from 'vitest';
import { checkJsonDepth, MAX_JSON_DEPTH } from './json-depth.js';

const nested = (depth: number): unknown => JSON.parse(`${'['.repeat(depth)}${']'.repeat(depth)}`);

describe('checkJsonDepth', () => {
  it('behavior: bodies up to the bound pass, scalars included', () => {
    for (const value of [null, 1, 'text', {}, [], nested(MAX_JSON_DEPTH)]) {
      expect(() => checkJsonDepth(value)).not.toThrow();
    }
    expect(() =>
      checkJsonDepth({ a: [{ b: [1, 'x'] }], c: nested(MAX_JSON_DEPTH - 1) }),
    ).not.toThrow();
  });

  it('error: one level more, in arrays or objects, is invalid_json (400)', () => {
    const deepObject = JSON.parse(
      `${'{"a":'.repeat(MAX_JSON_DEPTH)}1${'}'.repeat(MAX_JSON_DEPTH)}`,
    );
    for (const value of [nested(MAX_JSON_DEPTH + 1), { tools: [deepObject] }]) {
      expect(() => checkJsonDepth(value)).toThrow(
        expect.objectContaining({ code: 'invalid_json', status: 400 }),
      );
    }
  });

  it('error: 100 000 levels are refused without overflowing the stack', () => {
    expect(() => checkJsonDepth(nested(100_000))).toThrow(/more than 128 levels deep/);
  });
});
