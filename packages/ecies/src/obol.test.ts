import { createCipheriv, createDecipheriv, createECDH, hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gcm } from '@noble/ciphers/aes.js';
import { p256 } from '@noble/curves/nist.js';
import { expand, extract } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, concatBytes, hexToBytes } from '@noble/hashes/utils.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { appleDecrypt, appleEncrypt } from './apple.js';
import { type EciesErrorCode, isEciesError } from './errors.js';
import {
  generateP256KeyPair,
  OBOL_MIN_MESSAGE_LENGTH,
  obolDecrypt,
  obolEncrypt,
  p256PublicKeyFromHex,
  p256PublicKeyFromPrivateKey,
  p256PublicKeyToHex,
} from './obol.js';

interface ObolVector {
  name: string;
  ephemeralPrivateKey: string;
  ephemeralPublicKey: string;
  sharedSecretX: string;
  aesKey: string;
  nonce: string;
  plaintext: string;
  message: string;
}
interface ObolVectorFile {
  recipientPrivateKey: string;
  recipientPublicKey: string;
  vectors: ObolVector[];
}

const kat = JSON.parse(
  readFileSync(new URL('../test-vectors/obol-tollgate-kat.json', import.meta.url), 'utf8'),
) as ObolVectorFile;
const recipientPrivateKey = hexToBytes(kat.recipientPrivateKey);
const recipientPublicKey = hexToBytes(kat.recipientPublicKey);

const ORDER = p256.Point.Fn.ORDER;
const scalarBytes = (value: bigint) => hexToBytes(value.toString(16).padStart(64, '0'));

function codeOf(run: () => unknown): EciesErrorCode | 'no error' | 'foreign error' {
  try {
    run();
    return 'no error';
  } catch (error) {
    return isEciesError(error) ? error.code : 'foreign error';
  }
}

// An off-curve point: (1, 1) does not satisfy y^2 = x^3 - 3x + b.
const offCurve = concatBytes(
  Uint8Array.of(4),
  new Uint8Array(31),
  Uint8Array.of(1),
  new Uint8Array(31),
  Uint8Array.of(1),
);
const identity = concatBytes(Uint8Array.of(4), new Uint8Array(64));
const withPrefix = (prefix: number) => {
  const key = recipientPublicKey.slice();
  key[0] = prefix;
  return key;
};

describe('obol: known-answer vectors', () => {
  for (const vector of kat.vectors) {
    it(`behavior: encrypt reproduces "${vector.name}" byte for byte`, () => {
      const message = obolEncrypt(recipientPublicKey, hexToBytes(vector.plaintext), {
        ephemeralPrivateKey: hexToBytes(vector.ephemeralPrivateKey),
        nonce: hexToBytes(vector.nonce),
      });
      expect(bytesToHex(message)).toBe(vector.message);
    });

    it(`behavior: decrypt opens "${vector.name}"`, () => {
      expect(bytesToHex(obolDecrypt(recipientPrivateKey, hexToBytes(vector.message)))).toBe(
        vector.plaintext,
      );
    });

    it(`behavior: "${vector.name}" recomputed step by step with @noble primitives`, () => {
      const ephemeralPrivateKey = hexToBytes(vector.ephemeralPrivateKey);
      const ephemeralPublicKey = p256.getPublicKey(ephemeralPrivateKey, false);
      expect(bytesToHex(ephemeralPublicKey)).toBe(vector.ephemeralPublicKey);
      expect(bytesToHex(p256.getPublicKey(recipientPrivateKey, false))).toBe(
        kat.recipientPublicKey,
      );
      // The X coordinate is bytes 1..33 of the uncompressed shared point.
      const sharedPoint = p256.getSharedSecret(ephemeralPrivateKey, recipientPublicKey, false);
      const sharedX = sharedPoint.slice(1, 33);
      expect(bytesToHex(sharedX)).toBe(vector.sharedSecretX);
      // RFC 5869: an absent salt is HashLen zero bytes.
      const prk = extract(sha256, sharedX, new Uint8Array(32));
      const key = expand(sha256, prk, concatBytes(ephemeralPublicKey, recipientPublicKey), 32);
      expect(bytesToHex(key)).toBe(vector.aesKey);
      const nonce = hexToBytes(vector.nonce);
      const sealed = gcm(key, nonce).encrypt(hexToBytes(vector.plaintext));
      expect(bytesToHex(concatBytes(Uint8Array.of(1), ephemeralPublicKey, nonce, sealed))).toBe(
        vector.message,
      );
    });
  }

  it('behavior: an empty plaintext makes a message of exactly 94 bytes', () => {
    const empty = kat.vectors.find((vector) => vector.plaintext === '')!;
    expect(hexToBytes(empty.message)).toHaveLength(OBOL_MIN_MESSAGE_LENGTH);
    expect(obolDecrypt(recipientPrivateKey, hexToBytes(empty.message))).toHaveLength(0);
  });
});

describe('obol: round trips', () => {
  it('behavior: decrypt(encrypt(m)) = m for any plaintext and key pair', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (plaintext) => {
        const { privateKey, publicKey } = generateP256KeyPair();
        const message = obolEncrypt(publicKey, plaintext);
        expect(message).toHaveLength(plaintext.length + OBOL_MIN_MESSAGE_LENGTH);
        expect(message[0]).toBe(0x01);
        expect(obolDecrypt(privateKey, message)).toEqual(plaintext);
      }),
      { numRuns: 100 },
    );
  });

  it('behavior: node:crypto (the Go gateway computes the same: HKDF, AES-256-GCM) opens what encrypt makes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (plaintext) => {
        const recipient = createECDH('prime256v1');
        recipient.generateKeys();
        const message = obolEncrypt(recipient.getPublicKey(), plaintext);
        const ephemeralPublicKey = message.subarray(1, 66);
        const z = recipient.computeSecret(ephemeralPublicKey);
        const info = concatBytes(ephemeralPublicKey, recipient.getPublicKey());
        const key = new Uint8Array(hkdfSync('sha256', z, new Uint8Array(0), info, 32));
        const decipher = createDecipheriv('aes-256-gcm', key, message.subarray(66, 78));
        decipher.setAuthTag(message.subarray(message.length - 16));
        const opened = Buffer.concat([
          decipher.update(message.subarray(78, message.length - 16)),
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
    const key = new Uint8Array(
      hkdfSync(
        'sha256',
        z,
        new Uint8Array(0),
        concatBytes(ephemeralPublicKey, recipientPublicKey),
        32,
      ),
    );
    const nonce = new Uint8Array(12).fill(7);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    const plaintext = new TextEncoder().encode('{"model":"m","messages":[]}');
    const sealed = concatBytes(cipher.update(plaintext), cipher.final(), cipher.getAuthTag());
    const message = concatBytes(Uint8Array.of(1), ephemeralPublicKey, nonce, sealed);
    expect(obolDecrypt(recipientPrivateKey, message)).toEqual(plaintext);
  });

  it('behavior: two encryptions of the same plaintext differ (fresh ephemeral key and nonce)', () => {
    const plaintext = new Uint8Array(16);
    const first = obolEncrypt(recipientPublicKey, plaintext);
    const second = obolEncrypt(recipientPublicKey, plaintext);
    expect(bytesToHex(first.subarray(1, 66))).not.toBe(bytesToHex(second.subarray(1, 66)));
    expect(bytesToHex(first.subarray(66, 78))).not.toBe(bytesToHex(second.subarray(66, 78)));
  });

  it('behavior: options.randomBytes drives the ephemeral key and nonce', () => {
    let calls = 0;
    const randomBytes = (length: number) => new Uint8Array(length).fill(++calls);
    const first = obolEncrypt(recipientPublicKey, new Uint8Array(3), { randomBytes });
    calls = 0;
    const second = obolEncrypt(recipientPublicKey, new Uint8Array(3), { randomBytes });
    expect(bytesToHex(first)).toBe(bytesToHex(second));
    expect(bytesToHex(first.subarray(66, 78))).toBe('01'.repeat(12));
  });

  it('error: a message for another key fails authentication', () => {
    const other = generateP256KeyPair();
    const message = obolEncrypt(recipientPublicKey, new Uint8Array(10));
    expect(codeOf(() => obolDecrypt(other.privateKey, message))).toBe('decryption_failed');
  });
});

describe('obol: tampering', () => {
  const expectedCodes = (byteIndex: number): EciesErrorCode[] => {
    if (byteIndex === 0) return ['unsupported_version'];
    // A flipped coordinate bit almost always leaves the curve; if it lands on another point, the tag fails.
    if (byteIndex <= 65) return ['invalid_public_key', 'decryption_failed'];
    return ['decryption_failed'];
  };

  it('error: every single flipped bit of a known vector is rejected with the code of its region', () => {
    const message = hexToBytes(kat.vectors[1]!.message);
    for (let bit = 0; bit < message.length * 8; bit++) {
      const altered = message.slice();
      altered[bit >> 3]! ^= 1 << (bit & 7);
      expect(expectedCodes(bit >> 3), `bit ${bit}`).toContain(
        codeOf(() => obolDecrypt(recipientPrivateKey, altered)),
      );
    }
  });

  it('error: any single flipped bit of a random message is rejected with the code of its region', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), fc.nat(), (plaintext, seed) => {
        const message = obolEncrypt(recipientPublicKey, plaintext);
        const bit = seed % (message.length * 8);
        const altered = message.slice();
        altered[bit >> 3]! ^= 1 << (bit & 7);
        expect(expectedCodes(bit >> 3)).toContain(
          codeOf(() => obolDecrypt(recipientPrivateKey, altered)),
        );
      }),
      { numRuns: 200 },
    );
  });

  it('error: a message cut or extended by any amount is rejected', () => {
    const message = hexToBytes(kat.vectors[0]!.message);
    for (let length = 0; length < message.length; length++) {
      const expected =
        length < OBOL_MIN_MESSAGE_LENGTH ? 'ciphertext_too_short' : 'decryption_failed';
      expect(codeOf(() => obolDecrypt(recipientPrivateKey, message.subarray(0, length)))).toBe(
        expected,
      );
    }
    expect(
      codeOf(() => obolDecrypt(recipientPrivateKey, concatBytes(message, Uint8Array.of(0)))),
    ).toBe('decryption_failed');
  });
});

describe('obol: wrong inputs', () => {
  const message = hexToBytes(kat.vectors[0]!.message);
  const plaintext = new Uint8Array(4);
  const version = (value: number) => {
    const altered = message.slice();
    altered[0] = value;
    return altered;
  };

  const table: [string, () => unknown, EciesErrorCode][] = [
    // recipient public key (encrypt)
    [
      'public key as a hex string',
      () => obolEncrypt(kat.recipientPublicKey as never, plaintext),
      'invalid_type',
    ],
    ['public key as null', () => obolEncrypt(null as never, plaintext), 'invalid_type'],
    [
      'public key as an array of numbers',
      () => obolEncrypt([...recipientPublicKey] as never, plaintext),
      'invalid_type',
    ],
    [
      'public key as a Uint16Array',
      () => obolEncrypt(new Uint16Array(65) as never, plaintext),
      'invalid_type',
    ],
    [
      'public key as an ArrayBuffer',
      () => obolEncrypt(recipientPublicKey.slice().buffer as never, plaintext),
      'invalid_type',
    ],
    ['public key of 0 bytes', () => obolEncrypt(new Uint8Array(0), plaintext), 'invalid_length'],
    [
      'public key of 64 bytes (no prefix)',
      () => obolEncrypt(recipientPublicKey.subarray(1), plaintext),
      'invalid_length',
    ],
    [
      'public key of 66 bytes',
      () => obolEncrypt(concatBytes(recipientPublicKey, Uint8Array.of(0)), plaintext),
      'invalid_length',
    ],
    [
      'public key compressed (33 bytes)',
      () => obolEncrypt(p256.getPublicKey(recipientPrivateKey, true), plaintext),
      'invalid_length',
    ],
    [
      'public key as the 1-byte SEC1 identity',
      () => obolEncrypt(Uint8Array.of(0), plaintext),
      'invalid_length',
    ],
    [
      'public key with prefix 0x02',
      () => obolEncrypt(withPrefix(0x02), plaintext),
      'invalid_public_key',
    ],
    [
      'public key with prefix 0x03',
      () => obolEncrypt(withPrefix(0x03), plaintext),
      'invalid_public_key',
    ],
    [
      'public key with prefix 0x06 (hybrid)',
      () => obolEncrypt(withPrefix(0x06), plaintext),
      'invalid_public_key',
    ],
    ['public key off the curve', () => obolEncrypt(offCurve, plaintext), 'invalid_public_key'],
    [
      'public key 0x04 || zeros (the identity)',
      () => obolEncrypt(identity, plaintext),
      'invalid_public_key',
    ],
    // plaintext and options (encrypt)
    [
      'plaintext as a string',
      () => obolEncrypt(recipientPublicKey, 'hello' as never),
      'invalid_type',
    ],
    [
      'plaintext as undefined',
      () => obolEncrypt(recipientPublicKey, undefined as never),
      'invalid_type',
    ],
    [
      'nonce of 11 bytes',
      () => obolEncrypt(recipientPublicKey, plaintext, { nonce: new Uint8Array(11) }),
      'invalid_length',
    ],
    [
      'nonce of 16 bytes',
      () => obolEncrypt(recipientPublicKey, plaintext, { nonce: new Uint8Array(16) }),
      'invalid_length',
    ],
    [
      'nonce as a string',
      () => obolEncrypt(recipientPublicKey, plaintext, { nonce: 'abc' as never }),
      'invalid_type',
    ],
    [
      'ephemeral private key of zero',
      () => obolEncrypt(recipientPublicKey, plaintext, { ephemeralPrivateKey: new Uint8Array(32) }),
      'invalid_private_key',
    ],
    [
      'ephemeral private key of 31 bytes',
      () =>
        obolEncrypt(recipientPublicKey, plaintext, {
          ephemeralPrivateKey: new Uint8Array(31).fill(1),
        }),
      'invalid_length',
    ],
    [
      'randomBytes returning too few bytes',
      () => obolEncrypt(recipientPublicKey, plaintext, { randomBytes: () => new Uint8Array(1) }),
      'invalid_length',
    ],
    [
      'randomBytes returning an array',
      () =>
        obolEncrypt(recipientPublicKey, plaintext, {
          randomBytes: (n) => new Array(n).fill(1) as never,
        }),
      'invalid_type',
    ],
    // recipient private key (decrypt)
    [
      'private key as a hex string',
      () => obolDecrypt(kat.recipientPrivateKey as never, message),
      'invalid_type',
    ],
    ['private key as a bigint', () => obolDecrypt(1n as never, message), 'invalid_type'],
    ['private key of 0 bytes', () => obolDecrypt(new Uint8Array(0), message), 'invalid_length'],
    [
      'private key of 31 bytes',
      () => obolDecrypt(recipientPrivateKey.subarray(1), message),
      'invalid_length',
    ],
    [
      'private key of 33 bytes',
      () => obolDecrypt(concatBytes(Uint8Array.of(0), recipientPrivateKey), message),
      'invalid_length',
    ],
    [
      'private key of 64 bytes',
      () => obolDecrypt(new Uint8Array(64).fill(1), message),
      'invalid_length',
    ],
    ['private key of zero', () => obolDecrypt(new Uint8Array(32), message), 'invalid_private_key'],
    [
      'private key equal to the group order',
      () => obolDecrypt(scalarBytes(ORDER), message),
      'invalid_private_key',
    ],
    [
      'private key above the group order',
      () => obolDecrypt(scalarBytes(ORDER + 1n), message),
      'invalid_private_key',
    ],
    [
      'private key of all 0xff',
      () => obolDecrypt(new Uint8Array(32).fill(0xff), message),
      'invalid_private_key',
    ],
    // message (decrypt)
    [
      'message as a string',
      () => obolDecrypt(recipientPrivateKey, kat.vectors[0]!.message as never),
      'invalid_type',
    ],
    ['message as null', () => obolDecrypt(recipientPrivateKey, null as never), 'invalid_type'],
    [
      'message of 0 bytes',
      () => obolDecrypt(recipientPrivateKey, new Uint8Array(0)),
      'ciphertext_too_short',
    ],
    [
      'message of 93 bytes',
      () => obolDecrypt(recipientPrivateKey, message.subarray(0, 93)),
      'ciphertext_too_short',
    ],
    [
      'message with version 0x00',
      () => obolDecrypt(recipientPrivateKey, version(0x00)),
      'unsupported_version',
    ],
    [
      'message with version 0x02',
      () => obolDecrypt(recipientPrivateKey, version(0x02)),
      'unsupported_version',
    ],
    [
      'message whose ephemeral key is off the curve',
      () =>
        obolDecrypt(
          recipientPrivateKey,
          concatBytes(Uint8Array.of(1), offCurve, message.subarray(66)),
        ),
      'invalid_public_key',
    ],
    [
      'message whose ephemeral key is 0x04 || zeros',
      () =>
        obolDecrypt(
          recipientPrivateKey,
          concatBytes(Uint8Array.of(1), identity, message.subarray(66)),
        ),
      'invalid_public_key',
    ],
    [
      'message whose ephemeral key has prefix 0x02',
      () => obolDecrypt(recipientPrivateKey, concatBytes(Uint8Array.of(1, 2), message.subarray(2))),
      'invalid_public_key',
    ],
    // key helpers
    [
      'public key from private key of zero',
      () => p256PublicKeyFromPrivateKey(new Uint8Array(32)),
      'invalid_private_key',
    ],
    [
      'public key from private key of 64 bytes',
      () => p256PublicKeyFromPrivateKey(new Uint8Array(64)),
      'invalid_length',
    ],
    [
      'public key from a string private key',
      () => p256PublicKeyFromPrivateKey('01' as never),
      'invalid_type',
    ],
    [
      'hex of a 64-byte public key',
      () => p256PublicKeyToHex(recipientPublicKey.subarray(1)),
      'invalid_length',
    ],
    ['hex of an off-curve public key', () => p256PublicKeyToHex(offCurve), 'invalid_public_key'],
    ['hex parse of bytes', () => p256PublicKeyFromHex(recipientPublicKey as never), 'invalid_type'],
    [
      'hex parse of 128 characters',
      () => p256PublicKeyFromHex(kat.recipientPublicKey.slice(2)),
      'invalid_length',
    ],
    [
      'hex parse of 132 characters (0x prefix)',
      () => p256PublicKeyFromHex(`0x${kat.recipientPublicKey}`),
      'invalid_length',
    ],
    ['hex parse of the empty string', () => p256PublicKeyFromHex(''), 'invalid_length'],
    [
      'hex parse of non-hex characters',
      () => p256PublicKeyFromHex(`${kat.recipientPublicKey.slice(0, 128)}zz`),
      'invalid_public_key',
    ],
    [
      'hex parse with prefix 02',
      () => p256PublicKeyFromHex(`02${kat.recipientPublicKey.slice(2)}`),
      'invalid_public_key',
    ],
    [
      'hex parse of an off-curve point',
      () => p256PublicKeyFromHex(bytesToHex(offCurve)),
      'invalid_public_key',
    ],
  ];

  for (const [name, run, code] of table) {
    it(`error: ${name} -> ${code}`, () => {
      expect(codeOf(run)).toBe(code);
    });
  }
});

describe('obol: key helpers', () => {
  it('behavior: generated key pairs are valid and their public key follows from the private key', () => {
    for (let index = 0; index < 20; index++) {
      const { privateKey, publicKey } = generateP256KeyPair();
      expect(privateKey).toHaveLength(32);
      expect(p256.utils.isValidSecretKey(privateKey)).toBe(true);
      expect(bytesToHex(p256PublicKeyFromPrivateKey(privateKey))).toBe(bytesToHex(publicKey));
      expect(bytesToHex(publicKey)).toBe(bytesToHex(p256.getPublicKey(privateKey, false)));
    }
  });

  it('behavior: the public key matches node:crypto for the vector key', () => {
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(recipientPrivateKey);
    expect(bytesToHex(p256PublicKeyFromPrivateKey(recipientPrivateKey))).toBe(
      ecdh.getPublicKey('hex', 'uncompressed'),
    );
  });

  it('behavior: generation is driven by options.randomBytes', () => {
    const randomBytes = (length: number) => new Uint8Array(length).fill(42);
    expect(bytesToHex(generateP256KeyPair({ randomBytes }).privateKey)).toBe(
      bytesToHex(generateP256KeyPair({ randomBytes }).privateKey),
    );
  });

  it('behavior: hex is 130 lowercase characters and parses back, in either case', () => {
    fc.assert(
      fc.property(fc.constant(null), () => {
        const { publicKey } = generateP256KeyPair();
        const hex = p256PublicKeyToHex(publicKey);
        expect(hex).toMatch(/^04[0-9a-f]{128}$/);
        expect(p256PublicKeyFromHex(hex)).toEqual(publicKey);
        expect(p256PublicKeyFromHex(hex.toUpperCase())).toEqual(publicKey);
      }),
      { numRuns: 20 },
    );
  });
});

describe('obol and Apple formats are not interchangeable', () => {
  const plaintext = new TextEncoder().encode('not interchangeable');

  it('error: an Apple message given to obolDecrypt is refused (its first byte 0x04 is no version)', () => {
    const apple = appleEncrypt(recipientPublicKey, plaintext);
    expect(codeOf(() => obolDecrypt(recipientPrivateKey, apple))).toBe('unsupported_version');
    expect(
      codeOf(() =>
        obolDecrypt(recipientPrivateKey, appleEncrypt(recipientPublicKey, new Uint8Array(0))),
      ),
    ).toBe('ciphertext_too_short');
    // With the version byte prepended, the layout parses but nothing authenticates.
    expect(
      codeOf(() => obolDecrypt(recipientPrivateKey, concatBytes(Uint8Array.of(1), apple))),
    ).toBe('decryption_failed');
  });

  it('error: an Obol message given to appleDecrypt is refused (0x01 is no point prefix)', () => {
    const obol = obolEncrypt(recipientPublicKey, plaintext);
    expect(codeOf(() => appleDecrypt(recipientPrivateKey, obol))).toBe('invalid_public_key');
    // Without its version byte the layout parses, but the keys differ, so the tag fails.
    expect(codeOf(() => appleDecrypt(recipientPrivateKey, obol.subarray(1)))).toBe(
      'decryption_failed',
    );
  });
});
