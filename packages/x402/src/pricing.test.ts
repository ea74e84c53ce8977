import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createPricing, estimatePromptTokens, formatUnits, parseUsd } from './index.js';

/** A chat body whose `messages` are exactly `bytes` bytes of JSON (bytes >= 30). */
function chat(bytes: number, extra: Record<string, unknown> = {}) {
  const messages = [{ role: 'user', content: 'x'.repeat(bytes - 30) }];
  expect(JSON.stringify(messages)).toHaveLength(bytes);
  return { model: 'llama3.2', messages, ...extra };
}

describe('createPricing', () => {
  it('behavior: without options a request costs $0.001', () => {
    expect(createPricing()({})).toBe(1000n);
    expect(createPricing()({ model: 'anything', body: chat(4000) })).toBe(1000n);
  });

  it('behavior: a flat price per request', () => {
    const price = createPricing({ default: { perRequest: '0.25' } });
    expect(price({ model: 'a' })).toBe(250_000n);
  });

  it('behavior: per model, an exact name first, then the longest prefix glob, then the default', () => {
    const price = createPricing({
      default: { perRequest: '0.009' },
      models: {
        'llama*': { perRequest: '0.001' },
        'llama3.2': { perRequest: '0.004' },
        'llama3*': { perRequest: '0.002' },
        'llama3.2*': { perRequest: '0.003' },
      },
    });
    expect(price({ model: 'llama3.2' })).toBe(4000n);
    expect(price({ model: 'llama3.2:1b' })).toBe(3000n);
    expect(price({ model: 'llama3.1' })).toBe(2000n);
    expect(price({ model: 'llama2' })).toBe(1000n);
    expect(price({ model: 'mistral' })).toBe(9000n);
    expect(price({})).toBe(9000n);
  });

  it('behavior: a lone * matches every model not matched otherwise', () => {
    const price = createPricing({
      default: { perRequest: '1' },
      models: { '*': { perRequest: '0.5' }, 'gpt*': { perRequest: '0.1' } },
    });
    expect(price({ model: 'gpt-4o' })).toBe(100_000n);
    expect(price({ model: 'other' })).toBe(500_000n);
    expect(price({})).toBe(500_000n);
  });

  it('behavior: per-token prices are USD per million tokens, prompt estimated at 4 bytes a token', () => {
    // 4000 bytes of messages = 1000 prompt tokens at $1/M = $0.001; 500 completion tokens at
    // $2/M = $0.001; plus $0.0005 per request.
    const price = createPricing({
      default: { perRequest: '0.0005', inputPerMillion: '1', outputPerMillion: '2' },
    });
    expect(estimatePromptTokens(chat(4000))).toBe(1000);
    expect(price({ body: chat(4000, { max_tokens: 500 }) })).toBe(500n + 1000n + 1000n);
    // A million completion tokens cost the output price per million exactly.
    expect(price({ body: { prompt: '', max_tokens: 1_000_000 } })).toBe(500n + 1n + 2_000_000n);
  });

  it('behavior: $100 per million output tokens make 10 tokens cost $0.001 (docs/payments.md)', () => {
    const price = createPricing({ default: { perRequest: '0.001', outputPerMillion: '100' } });
    expect(price({ body: { messages: [], max_tokens: 10 } })).toBe(2000n);
    expect(price({ body: { messages: [], max_tokens: 1000 } })).toBe(101_000n);
  });

  it('behavior: max_completion_tokens wins over max_tokens; without either, defaultMaxTokens', () => {
    const price = createPricing({ default: { outputPerMillion: '1' }, defaultMaxTokens: 300 });
    expect(price({ body: { messages: [], max_tokens: 100 } })).toBe(100n);
    expect(price({ body: { messages: [], max_tokens: 100, max_completion_tokens: 200 } })).toBe(
      200n,
    );
    expect(price({ body: { messages: [] } })).toBe(300n);
    expect(price({})).toBe(300n);
    expect(createPricing({ default: { outputPerMillion: '1' } })({ body: {} })).toBe(1024n);
  });

  it.each([['many'], [-1], [1.5], [null], [Number.MAX_VALUE]])(
    'behavior: a max_tokens of %j falls back to the default',
    (maxTokens) => {
      const price = createPricing({ default: { outputPerMillion: '1' }, defaultMaxTokens: 7 });
      expect(price({ body: { prompt: 'hi', max_tokens: maxTokens } })).toBe(7n);
    },
  );

  it('behavior: embeddings (input without messages or prompt) produce no completion', () => {
    const price = createPricing({ default: { inputPerMillion: '1', outputPerMillion: '1000' } });
    const input = 'y'.repeat(3998); // '"yyy…"' is 4000 bytes of JSON: 1000 tokens
    expect(price({ body: { model: 'embed', input } })).toBe(1000n);
    expect(price({ body: { model: 'embed', input: [input] } })).toBe(1001n);
  });

  it('behavior: the prompt estimate counts UTF-8 bytes, rounded up', () => {
    expect(estimatePromptTokens({ prompt: 'ab' })).toBe(1); // '"ab"' = 4 bytes
    expect(estimatePromptTokens({ prompt: 'abc' })).toBe(2); // 5 bytes
    expect(estimatePromptTokens({ prompt: 'éé' })).toBe(2); // 6 bytes
    expect(estimatePromptTokens({ prompt: '🚀' })).toBe(2); // 6 bytes
    expect(estimatePromptTokens({ max_tokens: 5 })).toBe(0);
    expect(estimatePromptTokens('a string')).toBe(0);
    expect(estimatePromptTokens(null)).toBe(0);
  });

  it('behavior: a fraction of an atomic unit rounds up', () => {
    // 1 token at $0.15/M is 0.15 atomic units: charged 1.
    const price = createPricing({ default: { inputPerMillion: '0.15' } });
    expect(price({ body: { prompt: 'ab' } })).toBe(1n);
    // 7 tokens at $0.15/M is 1.05 atomic units: charged 2.
    expect(price({ body: { prompt: 'x'.repeat(26) } })).toBe(2n);
    // Exactly 1 atomic unit is not rounded further.
    const exact = createPricing({ default: { inputPerMillion: '1' } });
    expect(exact({ body: { prompt: 'ab' } })).toBe(1n);
  });

  it('behavior: the price of equal requests is equal, however the body object was made', () => {
    const price = createPricing({
      default: { perRequest: '0.0001', inputPerMillion: '0.3', outputPerMillion: '1.2' },
    });
    fc.assert(
      fc.property(
        fc.array(fc.record({ role: fc.constantFrom('user', 'system'), content: fc.string() })),
        fc.nat({ max: 100_000 }),
        (messages, maxTokens) => {
          const body = { model: 'm', messages, max_tokens: maxTokens };
          const copy = JSON.parse(JSON.stringify(body)) as unknown;
          const first = price({ model: 'm', body });
          expect(price({ model: 'm', body: copy })).toBe(first);
          expect(price({ model: 'm', body })).toBe(first);
        },
      ),
    );
  });

  it('error: a malformed price names the field', () => {
    expect(() => createPricing({ models: { 'llama*': { perRequest: '-0.1' } } })).toThrow(
      /models\.llama\*\.perRequest/,
    );
    expect(() => createPricing({ default: { inputPerMillion: 'cheap' } })).toThrow(RangeError);
    expect(() => createPricing({ defaultMaxTokens: -1 })).toThrow(RangeError);
    expect(() => createPricing({ defaultMaxTokens: 1.5 })).toThrow(RangeError);
  });

  it('behavior: per-token prices may have six more decimals than the asset', () => {
    const price = createPricing({ default: { inputPerMillion: '0.000000000001' } });
    expect(price({ body: { prompt: 'ab' } })).toBe(1n);
    expect(() => createPricing({ default: { inputPerMillion: '0.0000000000001' } })).toThrow(
      /decimal places/,
    );
  });
});

describe('parseUsd', () => {
  it.each([
    ['0.001', 6, 1000n],
    ['1', 6, 1_000_000n],
    ['0', 6, 0n],
    ['12.5', 6, 12_500_000n],
    ['0.000001', 6, 1n],
    ['0.0010000000', 6, 1000n],
    [' 0.5 ', 6, 500_000n],
    ['007', 2, 700n],
    ['1.5', 0, undefined],
    ['3', 0, 3n],
  ] as const)('behavior: parseUsd(%j, %i) = %s', (value, places, expected) => {
    if (expected === undefined) expect(() => parseUsd(value, places)).toThrow(RangeError);
    else expect(parseUsd(value, places)).toBe(expected);
  });

  it.each([
    '-1',
    '-0.001',
    '0.0000001',
    'abc',
    '',
    ' ',
    '1e-3',
    '0x10',
    '1.',
    '.5',
    '1,5',
    '$1',
    'Infinity',
    'NaN',
  ])('error: parseUsd(%j) is a RangeError', (value) => {
    expect(() => parseUsd(value, 6, 'price')).toThrow(RangeError);
  });

  it('error: too many decimals says so', () => {
    expect(() => parseUsd('0.0000001', 6, 'TOLLGATE_X402_PRICE')).toThrow(
      /TOLLGATE_X402_PRICE "0.0000001" has more than 6 decimal places/,
    );
  });

  it('error: a number (from a YAML or JSON config) is a TypeError, not a crash', () => {
    expect(() => parseUsd(0.001 as unknown as string, 6, 'price')).toThrow(
      /price must be a decimal string/,
    );
  });
});

describe('formatUnits', () => {
  it.each([
    [1500n, 6, '0.0015'],
    [0n, 6, '0'],
    [1n, 6, '0.000001'],
    [1_000_000n, 6, '1'],
    [1_234_567n, 6, '1.234567'],
    [120_000_000n, 6, '120'],
    [5n, 0, '5'],
    [1234n, 2, '12.34'],
    [-1500n, 6, '-0.0015'],
    [10n ** 18n, 18, '1'],
  ] as const)('behavior: formatUnits(%s, %i) = %j', (amount, decimals, text) => {
    expect(formatUnits(amount, decimals)).toBe(text);
  });

  it('behavior: formatUnits and parseUsd are inverses', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 30n }),
        fc.nat({ max: 18 }),
        (amount, places) => {
          expect(parseUsd(formatUnits(amount, places), places)).toBe(amount);
        },
      ),
    );
  });
});
