import { describe, expect, it } from 'vitest';
import { createId, generateKey, hashSecret, parseKey, secretMatches } from './index.js';

describe('keys', () => {
  it('behavior: a generated key parses back to its id, and its secret matches the stored hash', () => {
    const { id, key, secretHash } = generateKey();
    expect(key).toMatch(/^tg_[a-z2-7]{16}_[A-Za-z0-9_-]{43}$/);
    const parsed = parseKey(key);
    expect(parsed?.id).toBe(id);
    expect(secretHash).toHaveLength(32);
    expect(secretMatches(parsed!.secret, secretHash)).toBe(true);
  });

  it('behavior: two keys never share an id or a secret', () => {
    const keys = Array.from({ length: 200 }, generateKey);
    expect(new Set(keys.map((key) => key.id)).size).toBe(200);
    expect(new Set(keys.map((key) => key.key)).size).toBe(200);
  });

  it('behavior: the stored hash is SHA-256 of the secret part only', () => {
    const { key, secretHash } = generateKey();
    const secret = key.slice('tg_'.length + 16 + 1);
    expect(Buffer.from(secretHash).toString('hex')).toBe(
      Buffer.from(hashSecret(secret)).toString('hex'),
    );
  });

  it('error: a flipped character of the secret does not match', () => {
    const { key, secretHash } = generateKey();
    const parsed = parseKey(key)!;
    const last = parsed.secret.at(-1) === 'A' ? 'B' : 'A';
    expect(secretMatches(`${parsed.secret.slice(0, -1)}${last}`, secretHash)).toBe(false);
  });

  it('error: strings that are not issued keys do not parse', () => {
    const { key } = generateKey();
    for (const value of [
      '',
      'sk-local-1',
      key.toUpperCase(),
      key.slice(0, -1),
      `${key}x`,
      key.replace('tg_', 'tk_'),
      `tg_${'a'.repeat(15)}_${'b'.repeat(43)}`,
    ]) {
      expect(parseKey(value), value).toBeUndefined();
    }
  });

  it('behavior: ids carry their prefix and 16 base32 characters', () => {
    expect(createId('tn')).toMatch(/^tn_[a-z2-7]{16}$/);
  });
});
