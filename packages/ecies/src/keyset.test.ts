import { describe, expect, it } from 'vitest';
import {
  activeKeys,
  createKeySet,
  type EciesErrorCode,
  isEciesError,
  type KeySet,
  obolDecrypt,
  obolEncrypt,
  parseKeySet,
  rotateKeySet,
  serializeKeySet,
} from './index.js';

const DAY = 86_400_000;
const T0 = Date.parse('2026-11-23T10:00:00Z');

function codeOf(run: () => unknown): EciesErrorCode | 'no error' {
  try {
    run();
  } catch (error) {
    if (isEciesError(error)) return error.code;
    throw error;
  }
  return 'no error';
}

describe('key sets', () => {
  it('behavior: a new set has one P-256 key with id 1, usable for the Obol format', () => {
    const set = createKeySet({ now: T0 });
    expect(set.keys).toHaveLength(1);
    const [key] = set.keys;
    expect(key).toMatchObject({ id: 1, kem: 0x0010, createdAt: T0 });
    expect(key!.publicKey).toHaveLength(65);
    const message = new TextEncoder().encode('{"model":"m"}');
    expect(obolDecrypt(key!.privateKey, obolEncrypt(key!.publicKey, message))).toEqual(message);
  });

  it('behavior: rotation puts a new key with the next id first and retires the old one after the grace period', () => {
    const set = createKeySet({ now: T0 });
    const rotated = rotateKeySet(set, { now: T0 + DAY, graceMs: DAY });
    expect(rotated.keys.map((key) => key.id)).toEqual([2, 1]);
    expect(rotated.keys[1]!.retiresAt).toBe(T0 + 2 * DAY);
    expect(activeKeys(rotated, T0 + 2 * DAY - 1).map((key) => key.id)).toEqual([2, 1]);
    expect(activeKeys(rotated, T0 + 2 * DAY).map((key) => key.id)).toEqual([2]);
    // Rotating again later drops the retired key.
    const again = rotateKeySet(rotated, { now: T0 + 3 * DAY, graceMs: 0 });
    expect(again.keys.map((key) => key.id)).toEqual([3, 2]);
    expect(activeKeys(again, T0 + 3 * DAY).map((key) => key.id)).toEqual([3]);
  });

  it('behavior: ids wrap from 255 to 1 and skip ids still accepted', () => {
    let set: KeySet = createKeySet({ now: T0 });
    set = { keys: [{ ...set.keys[0]!, id: 255 }] };
    const rotated = rotateKeySet(set, { now: T0, graceMs: DAY });
    expect(rotated.keys.map((key) => key.id)).toEqual([1, 255]);
  });

  it('behavior: X25519 keys too', () => {
    const set = createKeySet({ now: T0, kem: 0x0020 });
    expect(set.keys[0]!.publicKey).toHaveLength(32);
    expect(parseKeySet(serializeKeySet(set))).toEqual(set);
  });

  it('behavior: the JSON form round-trips, retirement included', () => {
    const set = rotateKeySet(createKeySet({ now: T0 }), { now: T0 + 1000, graceMs: DAY });
    const text = serializeKeySet(set);
    expect(JSON.parse(text)).toMatchObject({ version: 1, keys: [{ id: 2 }, { id: 1 }] });
    expect(parseKeySet(text)).toEqual(set);
  });

  it('error: a damaged key set is refused, naming what is wrong', () => {
    const good = JSON.parse(serializeKeySet(createKeySet({ now: T0 })));
    const other = JSON.parse(serializeKeySet(createKeySet({ now: T0 })));
    const cases: Array<[string, unknown]> = [
      ['not json', '{'],
      ['no version', { keys: good.keys }],
      ['no keys', { version: 1, keys: [] }],
      ['bad id', { version: 1, keys: [{ ...good.keys[0], id: 256 }] }],
      ['duplicate id', { version: 1, keys: [good.keys[0], { ...other.keys[0], id: 1 }] }],
      ['unknown kem', { version: 1, keys: [{ ...good.keys[0], kem: 0x0011 }] }],
      ['bad hex', { version: 1, keys: [{ ...good.keys[0], private_key: 'zz' }] }],
      [
        'mismatched pair',
        { version: 1, keys: [{ ...good.keys[0], public_key: other.keys[0].public_key }] },
      ],
      [
        'zero private key',
        { version: 1, keys: [{ ...good.keys[0], private_key: '00'.repeat(32) }] },
      ],
      ['bad time', { version: 1, keys: [{ ...good.keys[0], created_at: 'yesterday' }] }],
    ];
    for (const [name, value] of cases) {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      expect(
        codeOf(() => parseKeySet(text)),
        name,
      ).toBe('invalid_key_config');
    }
  });

  it('error: an unknown KEM or a negative grace period is refused', () => {
    expect(codeOf(() => createKeySet({ kem: 0x0012 }))).toBe('unsupported_suite');
    expect(codeOf(() => rotateKeySet(createKeySet(), { graceMs: -1 }))).toBe('invalid_type');
  });
});
