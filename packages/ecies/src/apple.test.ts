import { createCipheriv, createDecipheriv, createECDH, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gcm } from '@noble/ciphers/aes.js';
import { p256 } from '@noble/curves/nist.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, concatBytes, hexToBytes } from '@noble/hashes/utils.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { APPLE_MIN_MESSAGE_LENGTH, appleDecrypt, appleEncrypt } from './apple.js';
import { type EciesErrorCode, isEciesError } from './errors.js';
import { generateP256KeyPair } from './obol.js';

interface AppleVector {
  name: string;
  ephemeralPrivateKey: string;
  ephemeralPublicKey: string;
  sharedSecretX: string;
  aesKey: string;
  iv: string;
  plaintext: string;
  message: string;
}
const readVectors = (name: string) =>
  JSON.parse(readFileSync(new URL(`../test-vectors/${name}`, import.meta.url), 'utf8'));

// Produced by Apple's Security framework itself, so it pins the real algorithm, not our reading of it.
const published = readVectors('apple-jedda-ecies-p256-sha256-viv.json') as {
  recipientPrivateKey: string;
  recipientPublicKey: string;
  message: string;
  plaintext: string;
};
const kat = readVectors('apple-tollgate-kat.json') as {
  recipientPrivateKey: string;
  recipientPublicKey: string;
  vectors: AppleVector[];
};
const recipientPrivateKey = hexToBytes(kat.recipientPrivateKey);
const recipientPublicKey = hexToBytes(kat.recipientPublicKey);
const ORDER = p256.Point.Fn.ORDER;

function codeOf(run: () => unknown): EciesErrorCode | 'no error' | 'foreign error' {
  try {
    run();
    return 'no error';
  } catch (error) {
    return isEciesError(error) ? error.code : 'foreign error';
  }
}

// ANSI X9.63 KDF written out on its own, one SHA-256 block per 32 bytes, to check the module's.
function x963Reference(z: Uint8Array, sharedInfo: Uint8Array, length: number): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (let counter = 1; blocks.length * 32 < length; counter++) {
    const counterBytes = Uint8Array.of(
      counter >>> 24,
      (counter >>> 16) & 0xff,
      (counter >>> 8) & 0xff,
      counter & 0xff,
    );
    blocks.push(sha256(concatBytes(z, counterBytes, sharedInfo)));
  }
  return concatBytes(...blocks).subarray(0, length);
}

describe('apple: the published vector made by SecKeyCreateEncryptedData', () => {
  it('behavior: decrypts to its plaintext', () => {
    const plaintext = appleDecrypt(
      hexToBytes(published.recipientPrivateKey),
      hexToBytes(published.message),
    );
    expect(bytesToHex(plaintext)).toBe(published.plaintext);
    expect(new TextDecoder().decode(plaintext)).toBe('P256-SHA256-VIV');
  });

  it('behavior: the vector key pair is consistent', () => {
    expect(bytesToHex(p256.getPublicKey(hexToBytes(published.recipientPrivateKey), false))).toBe(
      published.recipientPublicKey,
    );
  });

  it('behavior: recomputed step by step, the derived IV is the second half of the X9.63 output', () => {
    const message = hexToBytes(published.message);
    const ephemeralPublicKey = message.subarray(0, 65);
    const z = p256
      .getSharedSecret(hexToBytes(published.recipientPrivateKey), ephemeralPublicKey, false)
      .slice(1, 33);
    const material = x963Reference(z, ephemeralPublicKey, 32);
    const opened = gcm(material.subarray(0, 16), material.subarray(16, 32)).decrypt(
      message.subarray(65),
    );
    expect(bytesToHex(opened)).toBe(published.plaintext);
    // The legacy (non-VariableIV) algorithm's all-zero IV does not open it: the IV really is derived.
    expect(() =>
      gcm(material.subarray(0, 16), new Uint8Array(16)).decrypt(message.subarray(65)),
    ).toThrow();
  });

  it('error: any single flipped bit of the published vector is rejected', () => {
    const message = hexToBytes(published.message);
    const privateKey = hexToBytes(published.recipientPrivateKey);
    for (let bit = 0; bit < message.length * 8; bit++) {
      const altered = message.slice();
      altered[bit >> 3]! ^= 1 << (bit & 7);
      const expected: EciesErrorCode[] =
        bit >> 3 < 65 ? ['invalid_public_key', 'decryption_failed'] : ['decryption_failed'];
      expect(expected, `bit ${bit}`).toContain(codeOf(() => appleDecrypt(privateKey, altered)));
    }
  });
});

describe('apple: known-answer vectors (self-made with node:crypto)', () => {
  for (const vector of kat.vectors) {
    it(`behavior: encrypt reproduces "${vector.name}" byte for byte`, () => {
      const message = appleEncrypt(recipientPublicKey, hexToBytes(vector.plaintext), {
        ephemeralPrivateKey: hexToBytes(vector.ephemeralPrivateKey),
      });
      expect(bytesToHex(message)).toBe(vector.message);
    });

    it(`behavior: decrypt opens "${vector.name}"`, () => {
      expect(bytesToHex(appleDecrypt(recipientPrivateKey, hexToBytes(vector.message)))).toBe(
        vector.plaintext,
      );
    });

    it(`behavior: "${vector.name}" recomputed step by step with @noble primitives`, () => {
      const ephemeralPrivateKey = hexToBytes(vector.ephemeralPrivateKey);
      const ephemeralPublicKey = p256.getPublicKey(ephemeralPrivateKey, false);
      expect(bytesToHex(ephemeralPublicKey)).toBe(vector.ephemeralPublicKey);
      const z = p256.getSharedSecret(ephemeralPrivateKey, recipientPublicKey, false).slice(1, 33);
      expect(bytesToHex(z)).toBe(vector.sharedSecretX);
      // One block suffices for 32 bytes: SHA-256(Z || 00000001 || ephemeral public key).
      const material = sha256(concatBytes(z, Uint8Array.of(0, 0, 0, 1), ephemeralPublicKey));
      expect(bytesToHex(material)).toBe(bytesToHex(x963Reference(z, ephemeralPublicKey, 32)));
      expect(bytesToHex(material.subarray(0, 16))).toBe(vector.aesKey);
      expect(bytesToHex(material.subarray(16, 32))).toBe(vector.iv);
      const sealed = gcm(material.subarray(0, 16), material.subarray(16, 32)).encrypt(
        hexToBytes(vector.plaintext),
      );
      expect(bytesToHex(concatBytes(ephemeralPublicKey, sealed))).toBe(vector.message);
    });
  }

  it('behavior: the X9.63 reference agrees with its definition past one block', () => {
    // Guards the reference itself: block 2 must use counter 00000002.
    const z = new Uint8Array(32).fill(9);
    const info = Uint8Array.of(1, 2, 3);
    const second = sha256(concatBytes(z, Uint8Array.of(0, 0, 0, 2), info));
    expect(bytesToHex(x963Reference(z, info, 48).subarray(32))).toBe(
      bytesToHex(second.subarray(0, 16)),
    );
  });
});

describe('apple: round trips', () => {
  it('behavior: decrypt(encrypt(m)) = m for any plaintext and key pair', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (plaintext) => {
        const { privateKey, publicKey } = generateP256KeyPair();
        const message = appleEncrypt(publicKey, plaintext);
        expect(message).toHaveLength(plaintext.length + APPLE_MIN_MESSAGE_LENGTH);
        expect(message[0]).toBe(0x04);
        expect(appleDecrypt(privateKey, message)).toEqual(plaintext);
      }),
      { numRuns: 100 },
    );
  });

  it('behavior: node:crypto opens what encrypt makes (X9.63 by hand, AES-128-GCM with a 16-byte IV)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (plaintext) => {
        const recipient = createECDH('prime256v1');
        recipient.generateKeys();
        const message = appleEncrypt(recipient.getPublicKey(), plaintext);
        const ephemeralPublicKey = message.subarray(0, 65);
        const z = recipient.computeSecret(ephemeralPublicKey);
        const material = createHash('sha256')
          .update(concatBytes(z, Uint8Array.of(0, 0, 0, 1), ephemeralPublicKey))
          .digest();
        const decipher = createDecipheriv(
          'aes-128-gcm',
          material.subarray(0, 16),
          material.subarray(16),
        );
        decipher.setAuthTag(message.subarray(message.length - 16));
        const opened = Buffer.concat([
          decipher.update(message.subarray(65, message.length - 16)),
          decipher.final(),
        ]);
        expect(new Uint8Array(opened)).toEqual(plaintext);
      }),
      { numRuns: 30 },
    );
  });

  it('behavior: decrypt opens what node:crypto makes in the same format', () => {
    const ephemeral = createECDH('prime256v1');
    ephemeral.generateKeys();
    const ephemeralPublicKey = ephemeral.getPublicKey();
    const z = ephemeral.computeSecret(recipientPublicKey);
    const material = createHash('sha256')
      .update(concatBytes(z, Uint8Array.of(0, 0, 0, 1), ephemeralPublicKey))
      .digest();
    const cipher = createCipheriv('aes-128-gcm', material.subarray(0, 16), material.subarray(16));
    const plaintext = new TextEncoder().encode('from node');
    const message = concatBytes(
      ephemeralPublicKey,
      cipher.update(plaintext),
      cipher.final(),
      cipher.getAuthTag(),
    );
    expect(appleDecrypt(recipientPrivateKey, message)).toEqual(plaintext);
  });

  it('behavior: options.randomBytes drives the ephemeral key', () => {
    const randomBytes = (length: number) => new Uint8Array(length).fill(5);
    expect(bytesToHex(appleEncrypt(recipientPublicKey, new Uint8Array(2), { randomBytes }))).toBe(
      bytesToHex(appleEncrypt(recipientPublicKey, new Uint8Array(2), { randomBytes })),
    );
  });

  it('error: any single flipped bit of a random message is rejected with the code of its region', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), fc.nat(), (plaintext, seed) => {
        const message = appleEncrypt(recipientPublicKey, plaintext);
        const bit = seed % (message.length * 8);
        const altered = message.slice();
        altered[bit >> 3]! ^= 1 << (bit & 7);
        const expected: EciesErrorCode[] =
          bit >> 3 < 65 ? ['invalid_public_key', 'decryption_failed'] : ['decryption_failed'];
        expect(expected).toContain(codeOf(() => appleDecrypt(recipientPrivateKey, altered)));
      }),
      { numRuns: 200 },
    );
  });

  it('error: a message for another key fails authentication', () => {
    const other = generateP256KeyPair();
    expect(
      codeOf(() =>
        appleDecrypt(other.privateKey, appleEncrypt(recipientPublicKey, new Uint8Array(3))),
      ),
    ).toBe('decryption_failed');
  });
});

describe('apple: wrong inputs', () => {
  const message = hexToBytes(kat.vectors[0]!.message);
  const plaintext = new Uint8Array(4);
  const offCurve = concatBytes(
    Uint8Array.of(4),
    new Uint8Array(31),
    Uint8Array.of(1),
    new Uint8Array(31),
    Uint8Array.of(1),
  );
  const identity = concatBytes(Uint8Array.of(4), new Uint8Array(64));
  const withPrefix = (bytes: Uint8Array, prefix: number) => {
    const altered = bytes.slice();
    altered[0] = prefix;
    return altered;
  };
  const scalarBytes = (value: bigint) => hexToBytes(value.toString(16).padStart(64, '0'));

  const table: [string, () => unknown, EciesErrorCode][] = [
    [
      'public key as a hex string',
      () => appleEncrypt(kat.recipientPublicKey as never, plaintext),
      'invalid_type',
    ],
    ['public key as undefined', () => appleEncrypt(undefined as never, plaintext), 'invalid_type'],
    ['public key of 0 bytes', () => appleEncrypt(new Uint8Array(0), plaintext), 'invalid_length'],
    [
      'public key of 64 bytes',
      () => appleEncrypt(recipientPublicKey.subarray(1), plaintext),
      'invalid_length',
    ],
    [
      'public key of 66 bytes',
      () => appleEncrypt(concatBytes(recipientPublicKey, Uint8Array.of(1)), plaintext),
      'invalid_length',
    ],
    [
      'public key with prefix 0x02',
      () => appleEncrypt(withPrefix(recipientPublicKey, 2), plaintext),
      'invalid_public_key',
    ],
    ['public key off the curve', () => appleEncrypt(offCurve, plaintext), 'invalid_public_key'],
    [
      'public key 0x04 || zeros (the identity)',
      () => appleEncrypt(identity, plaintext),
      'invalid_public_key',
    ],
    ['plaintext as a string', () => appleEncrypt(recipientPublicKey, 'x' as never), 'invalid_type'],
    [
      'ephemeral private key at the group order',
      () =>
        appleEncrypt(recipientPublicKey, plaintext, { ephemeralPrivateKey: scalarBytes(ORDER) }),
      'invalid_private_key',
    ],
    [
      'ephemeral private key of 33 bytes',
      () =>
        appleEncrypt(recipientPublicKey, plaintext, {
          ephemeralPrivateKey: new Uint8Array(33).fill(1),
        }),
      'invalid_length',
    ],
    ['private key as a string', () => appleDecrypt('00' as never, message), 'invalid_type'],
    ['private key of 0 bytes', () => appleDecrypt(new Uint8Array(0), message), 'invalid_length'],
    [
      'private key of 64 bytes',
      () => appleDecrypt(new Uint8Array(64).fill(1), message),
      'invalid_length',
    ],
    [
      'private key of 66 bytes',
      () => appleDecrypt(new Uint8Array(66).fill(1), message),
      'invalid_length',
    ],
    ['private key of zero', () => appleDecrypt(new Uint8Array(32), message), 'invalid_private_key'],
    [
      'private key at the group order',
      () => appleDecrypt(scalarBytes(ORDER), message),
      'invalid_private_key',
    ],
    [
      'private key above the group order',
      () => appleDecrypt(scalarBytes(ORDER + 5n), message),
      'invalid_private_key',
    ],
    [
      'message as an array',
      () => appleDecrypt(recipientPrivateKey, [...message] as never),
      'invalid_type',
    ],
    [
      'message of 0 bytes',
      () => appleDecrypt(recipientPrivateKey, new Uint8Array(0)),
      'ciphertext_too_short',
    ],
    [
      'message of 80 bytes',
      () => appleDecrypt(recipientPrivateKey, message.subarray(0, 80)),
      'ciphertext_too_short',
    ],
    [
      'message whose ephemeral key has prefix 0x02',
      () => appleDecrypt(recipientPrivateKey, withPrefix(message, 2)),
      'invalid_public_key',
    ],
    [
      'message whose ephemeral key is off the curve',
      () => appleDecrypt(recipientPrivateKey, concatBytes(offCurve, message.subarray(65))),
      'invalid_public_key',
    ],
    [
      'message whose ephemeral key is 0x04 || zeros',
      () => appleDecrypt(recipientPrivateKey, concatBytes(identity, message.subarray(65))),
      'invalid_public_key',
    ],
    [
      'message with its tag cut by one byte',
      () => appleDecrypt(recipientPrivateKey, message.subarray(0, message.length - 1)),
      'decryption_failed',
    ],
  ];

  for (const [name, run, code] of table) {
    it(`error: ${name} -> ${code}`, () => {
      expect(codeOf(run)).toBe(code);
    });
  }
});
