/**
 * Pricing: what one request costs, in the asset's atomic units. Every price is computed from
 * the request alone, deterministically, because the gate rebuilds the terms from the paid
 * request and compares them with the ones the client signed for.
 */

/** What a price may depend on: the model and the request body. */
export interface PriceRequest {
  /** The model as the caller named it. */
  model?: string;
  /** The parsed JSON body. */
  body?: unknown;
}

/** A price for one model: a flat part, per-token parts, or both. USD amounts as decimal strings. */
export interface ModelPrice {
  /** USD per request, e.g. `"0.001"`. */
  perRequest?: string;
  /** USD per million prompt tokens (estimated from the request: 4 bytes a token). */
  inputPerMillion?: string;
  /** USD per million completion tokens, charged for `max_tokens` (the most the answer may use). */
  outputPerMillion?: string;
}

/** Options of {@link createPricing}. */
export interface PricingOptions {
  /**
   * The price of a model not listed in `models`.
   * @default { perRequest: '0.001' }
   */
  default?: ModelPrice;
  /** Prices by model name; a name ending in `*` matches every model starting with the rest. */
  models?: Record<string, ModelPrice>;
  /**
   * Completion tokens charged for a request that sets no `max_tokens` (with an output price).
   * @default 1024
   */
  defaultMaxTokens?: number;
  /**
   * Decimal places of the asset (USDC: 6).
   * @default 6
   */
  decimals?: number;
}

/** A price function: atomic units for a request. */
export type Pricing = (request: PriceRequest) => bigint;

/**
 * Builds a price function from per-model prices. Prices are exact decimals: no floating
 * point is involved, and a part of an atomic unit rounds up.
 *
 * @throws {RangeError} for a price that is not a non-negative decimal or has more decimal
 *   places than the asset.
 * @example
 * ```ts
 * const price = createPricing({ default: { perRequest: '0.001' }, models: { 'llama3*': { perRequest: '0.002' } } });
 * price({ model: 'llama3.2' }); // 2000n (USDC atomic units: $0.002)
 * ```
 */
export function createPricing(options: PricingOptions = {}): Pricing {
  const decimals = options.decimals ?? 6;
  const defaultMaxTokens = options.defaultMaxTokens ?? 1024;
  if (!Number.isSafeInteger(defaultMaxTokens) || defaultMaxTokens < 0) {
    throw new RangeError(
      `defaultMaxTokens must be a non-negative integer, not ${defaultMaxTokens}.`,
    );
  }
  const compile = (price: ModelPrice, where: string) => ({
    perRequest: parseUsd(price.perRequest ?? '0', decimals, `${where}.perRequest`),
    // Per-token parts get six more places: millionths of an atomic unit per million tokens.
    input: parseUsd(price.inputPerMillion ?? '0', decimals + 6, `${where}.inputPerMillion`),
    output: parseUsd(price.outputPerMillion ?? '0', decimals + 6, `${where}.outputPerMillion`),
  });
  const fallback = compile(options.default ?? { perRequest: '0.001' }, 'default');
  const exact = new Map<string, ReturnType<typeof compile>>();
  const prefixes: Array<[string, ReturnType<typeof compile>]> = [];
  for (const [name, price] of Object.entries(options.models ?? {})) {
    const compiled = compile(price, `models.${name}`);
    if (name.endsWith('*')) prefixes.push([name.slice(0, -1), compiled]);
    else exact.set(name, compiled);
  }
  // The longest prefix wins, so `llama3.2*` beats `llama*`.
  prefixes.sort((a, b) => b[0].length - a[0].length);
  // tokens x (millionths of an atomic unit per million tokens) / 10^12 = atomic units.
  const scale = 1_000_000n * 1_000_000n;
  return function price(request) {
    const model = request.model ?? '';
    const rule =
      exact.get(model) ?? prefixes.find(([prefix]) => model.startsWith(prefix))?.[1] ?? fallback;
    let amount = rule.perRequest;
    if (rule.input > 0n)
      amount += ceilDiv(BigInt(estimatePromptTokens(request.body)) * rule.input, scale);
    if (rule.output > 0n) {
      amount += ceilDiv(
        BigInt(maxCompletionTokens(request.body, defaultMaxTokens)) * rule.output,
        scale,
      );
    }
    return amount;
  };
}

/**
 * Converts a decimal USD string to integer units with `places` decimal places.
 *
 * @throws {TypeError} when it is not a string.
 * @throws {RangeError} when it is not a plain non-negative decimal or has too many places.
 * @example
 * parseUsd('0.001', 6); // 1000n
 */
export function parseUsd(value: string, places: number, name = 'price'): bigint {
  // Configs parsed from YAML or JSON hand over numbers; a float cannot hold a price exactly.
  if (typeof value !== 'string') {
    throw new TypeError(`${name} must be a decimal string like "0.001", not a ${typeof value}.`);
  }
  const match = /^(\d+)(?:\.(\d+))?$/.exec(value.trim());
  if (!match) {
    throw new RangeError(
      `${name} must be a non-negative decimal number of US dollars like "0.001", not "${value}".`,
    );
  }
  const fraction = match[2] ?? '';
  if (fraction.replace(/0+$/, '').length > places) {
    throw new RangeError(
      `${name} "${value}" has more than ${places} decimal places, finer than the asset can pay.`,
    );
  }
  return BigInt(match[1]! + fraction.padEnd(places, '0').slice(0, places));
}

/**
 * Formats atomic units as a decimal (e.g. for logs and docs).
 *
 * @example
 * formatUnits(1500n, 6); // '0.0015'
 */
export function formatUnits(amount: bigint, decimals = 6): string {
  if (amount < 0n) return `-${formatUnits(-amount, decimals)}`;
  if (decimals === 0) return amount.toString();
  const text = amount.toString().padStart(decimals + 1, '0');
  const whole = text.slice(0, -decimals);
  const fraction = text.slice(-decimals).replace(/0+$/, '');
  return fraction === '' ? whole : `${whole}.${fraction}`;
}

/**
 * A deterministic prompt size estimate: the UTF-8 length of the prompt-bearing fields
 * (`messages`, `prompt`, `input`) as JSON, divided by 4, rounded up. It only has to be the
 * same for the same request, and roughly proportional to the real count.
 */
export function estimatePromptTokens(body: unknown): number {
  if (typeof body !== 'object' || body === null) return 0;
  const record = body as Record<string, unknown>;
  const prompt = record.messages ?? record.prompt ?? record.input;
  if (prompt === undefined) return 0;
  return Math.ceil(new TextEncoder().encode(JSON.stringify(prompt)).length / 4);
}

function maxCompletionTokens(body: unknown, fallback: number): number {
  const record = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  // Embeddings produce no completion.
  if (record.input !== undefined && record.messages === undefined && record.prompt === undefined)
    return 0;
  const value = record.max_completion_tokens ?? record.max_tokens;
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : fallback;
}

function ceilDiv(numerator: bigint, denominator: bigint): bigint {
  return (numerator + denominator - 1n) / denominator;
}
