import { createECDH } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Chacha20Poly1305 } from '@hpke/chacha20poly1305';
import {
  Aes128Gcm,
  Aes256Gcm,
  CipherSuite,
  DhkemP256HkdfSha256,
  DhkemX25519HkdfSha256,
  ExportOnly,
  HkdfSha256,
} from '@hpke/core';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type EciesErrorCode, isEciesError } from './errors.js';
import { HPKE_AEAD, HPKE_KDF, HPKE_KEM, hpkeSuite } from './hpke.js';

interface Vector {
  source: string;
  mode: number;
  kem_id: number;
  kdf_id: number;
  aead_id: number;
  info: string;
  ikmE: string;
  pkEm: string;
  skEm: string;
  ikmR: string;
  pkRm: string;
  skRm: string;
  enc: string;
  shared_secret: string;
  key_schedule_context: string;
  secret: string;
  key: string;
  base_nonce: string;
  exporter_secret: string;
  encryptions: { sequence_number: number; pt: string; aad: string; nonce: string; ct: string }[];
  exports: { exporter_context: string; L: number; exported_value: string }[];
}

function loadVector(name: string): Vector {
  const url = new URL(`../test-vectors/${name}`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')) as Vector;
}

const VECTORS = ['rfc9180-a.1.json', 'rfc9180-a.2.json', 'rfc9180-a.3.json'].map((name) => ({
  name,
  vector: loadVector(name),
}));

const text = new TextEncoder();
const h = hexToBytes;
const x = bytesToHex;

function expectCode(action: () => unknown, code: EciesErrorCode): void {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(isEciesError(caught), `expected an EciesError '${code}', got ${String(caught)}`).toBe(
    true,
  );
  expect((caught as { code: string }).code).toBe(code);
}

function errorCode(action: () => unknown): string | undefined {
  try {
    action();
    return undefined;
  } catch (error) {
    return isEciesError(error) ? error.code : `not an EciesError: ${String(error)}`;
  }
}

describe('RFC 9180 Appendix A vectors (base mode)', () => {
  for (const { name, vector } of VECTORS) {
    describe(`${name}: ${vector.source}`, () => {
      const suite = hpkeSuite({ kem: vector.kem_id, kdf: vector.kdf_id, aead: vector.aead_id });
      const info = h(vector.info);

      it('behavior: the vector is base mode', () => {
        expect(vector.mode).toBe(0);
      });

      it('behavior: DeriveKeyPair(ikmE) and DeriveKeyPair(ikmR) give the listed keys', () => {
        const ephemeral = suite.deriveKeyPair(h(vector.ikmE));
        expect(x(ephemeral.privateKey)).toBe(vector.skEm);
        expect(x(ephemeral.publicKey)).toBe(vector.pkEm);
        const recipient = suite.deriveKeyPair(h(vector.ikmR));
        expect(x(recipient.privateKey)).toBe(vector.skRm);
        expect(x(recipient.publicKey)).toBe(vector.pkRm);
        expect(x(suite.getPublicKey(h(vector.skRm)))).toBe(vector.pkRm);
      });

      it('behavior: Encap with ikmE gives enc and shared_secret; Decap agrees', () => {
        const { enc, sharedSecret } = suite.encap(h(vector.pkRm), { ikmE: h(vector.ikmE) });
        expect(x(enc)).toBe(vector.enc);
        expect(x(sharedSecret)).toBe(vector.shared_secret);
        expect(x(suite.decap(h(vector.enc), h(vector.skRm)))).toBe(vector.shared_secret);
      });

      it('behavior: the key schedule gives key_schedule_context, secret, key, base_nonce, exporter_secret', () => {
        const empty = new Uint8Array(0);
        const pskIdHash = suite.labeledExtract(empty, text.encode('psk_id_hash'), empty);
        const infoHash = suite.labeledExtract(empty, text.encode('info_hash'), info);
        expect('00' + x(pskIdHash) + x(infoHash)).toBe(vector.key_schedule_context);
        const secret = suite.labeledExtract(h(vector.shared_secret), text.encode('secret'), empty);
        expect(x(secret)).toBe(vector.secret);

        const secrets = suite.keySchedule(h(vector.shared_secret), info);
        expect(x(secrets.key)).toBe(vector.key);
        expect(x(secrets.baseNonce)).toBe(vector.base_nonce);
        expect(x(secrets.exporterSecret)).toBe(vector.exporter_secret);
      });

      it('behavior: setupBaseS/setupBaseR seal and open every listed message at its sequence number', () => {
        const { enc, context: sender } = suite.setupBaseS(h(vector.pkRm), info, {
          ikmE: h(vector.ikmE),
        });
        expect(x(enc)).toBe(vector.enc);
        const recipient = suite.setupBaseR(enc, h(vector.skRm), info);
        const listed = new Map(vector.encryptions.map((entry) => [entry.sequence_number, entry]));
        const last = Math.max(...listed.keys());
        let checked = 0;
        for (let sequence = 0; sequence <= last; sequence++) {
          expect(sender.sequenceNumber).toBe(BigInt(sequence));
          const entry = listed.get(sequence);
          if (entry === undefined) {
            // Messages the RFC does not list still advance both sequence numbers.
            const filler = sender.seal(text.encode(`filler ${sequence}`));
            expect(recipient.open(filler)).toEqual(text.encode(`filler ${sequence}`));
            continue;
          }
          const ciphertext = sender.seal(h(entry.pt), h(entry.aad));
          expect(x(ciphertext)).toBe(entry.ct);
          expect(x(recipient.open(h(entry.ct), h(entry.aad)))).toBe(entry.pt);
          checked++;
        }
        expect(checked).toBe(vector.encryptions.length);
      });

      it('behavior: a context resumed at each listed sequence number uses the listed nonce', () => {
        const secrets = {
          key: h(vector.key),
          baseNonce: h(vector.base_nonce),
          exporterSecret: h(vector.exporter_secret),
        };
        for (const entry of vector.encryptions) {
          const sequenceNumber = BigInt(entry.sequence_number);
          const sender = suite.senderContext(secrets, { sequenceNumber });
          expect(x(sender.seal(h(entry.pt), h(entry.aad)))).toBe(entry.ct);
          // The AEAD alone with the listed nonce gives the same bytes, so the nonce is the listed one.
          expect(x(suite.aeadSeal(h(vector.key), h(entry.nonce), h(entry.pt), h(entry.aad)))).toBe(
            entry.ct,
          );
          const recipient = suite.recipientContext(secrets, { sequenceNumber });
          expect(x(recipient.open(h(entry.ct), h(entry.aad)))).toBe(entry.pt);
        }
      });

      it('behavior: both contexts export the listed values', () => {
        const { context: sender } = suite.setupBaseS(h(vector.pkRm), info, {
          ikmE: h(vector.ikmE),
        });
        const recipient = suite.setupBaseR(h(vector.enc), h(vector.skRm), info);
        for (const entry of vector.exports) {
          expect(x(sender.export(h(entry.exporter_context), entry.L))).toBe(entry.exported_value);
          expect(x(recipient.export(h(entry.exporter_context), entry.L))).toBe(
            entry.exported_value,
          );
        }
        const single = suite.sendExport(
          h(vector.pkRm),
          h(vector.exports[0]!.exporter_context),
          vector.exports[0]!.L,
          { info, ikmE: h(vector.ikmE) },
        );
        expect(x(single.exportedValue)).toBe(vector.exports[0]!.exported_value);
        expect(
          x(
            suite.receiveExport(
              h(vector.enc),
              h(vector.skRm),
              h(vector.exports[0]!.exporter_context),
              vector.exports[0]!.L,
              { info },
            ),
          ),
        ).toBe(vector.exports[0]!.exported_value);
      });

      it('behavior: single-shot seal with ikmE gives the sequence-0 ciphertext; open reverses it', () => {
        const first = vector.encryptions.find((entry) => entry.sequence_number === 0)!;
        const { enc, ciphertext } = suite.seal(h(vector.pkRm), h(first.pt), {
          info,
          aad: h(first.aad),
          ikmE: h(vector.ikmE),
        });
        expect(x(enc)).toBe(vector.enc);
        expect(x(ciphertext)).toBe(first.ct);
        expect(x(suite.open(enc, h(vector.skRm), ciphertext, { info, aad: h(first.aad) }))).toBe(
          first.pt,
        );
      });
    });
  }
});

// --------------------------------------------------------------------------------------------
// Cross-check with @hpke/core

const KEM_NAMES = {
  [HPKE_KEM.DHKEM_P256_HKDF_SHA256]: 'P-256',
  [HPKE_KEM.DHKEM_X25519_HKDF_SHA256]: 'X25519',
};
const AEAD_NAMES = {
  [HPKE_AEAD.AES_128_GCM]: 'AES-128-GCM',
  [HPKE_AEAD.AES_256_GCM]: 'AES-256-GCM',
  [HPKE_AEAD.CHACHA20_POLY1305]: 'ChaCha20-Poly1305',
  [HPKE_AEAD.EXPORT_ONLY]: 'export-only',
};

const SUITES = [
  { kem: HPKE_KEM.DHKEM_P256_HKDF_SHA256, aead: HPKE_AEAD.AES_128_GCM },
  { kem: HPKE_KEM.DHKEM_P256_HKDF_SHA256, aead: HPKE_AEAD.AES_256_GCM },
  { kem: HPKE_KEM.DHKEM_P256_HKDF_SHA256, aead: HPKE_AEAD.CHACHA20_POLY1305 },
  { kem: HPKE_KEM.DHKEM_X25519_HKDF_SHA256, aead: HPKE_AEAD.AES_128_GCM },
  { kem: HPKE_KEM.DHKEM_X25519_HKDF_SHA256, aead: HPKE_AEAD.AES_256_GCM },
  { kem: HPKE_KEM.DHKEM_X25519_HKDF_SHA256, aead: HPKE_AEAD.CHACHA20_POLY1305 },
] as const;

function theirSuite(kem: number, aead: number): CipherSuite {
  return new CipherSuite({
    kem:
      kem === HPKE_KEM.DHKEM_P256_HKDF_SHA256
        ? new DhkemP256HkdfSha256()
        : new DhkemX25519HkdfSha256(),
    kdf: new HkdfSha256(),
    aead:
      aead === HPKE_AEAD.AES_128_GCM
        ? new Aes128Gcm()
        : aead === HPKE_AEAD.AES_256_GCM
          ? new Aes256Gcm()
          : aead === HPKE_AEAD.CHACHA20_POLY1305
            ? new Chacha20Poly1305()
            : new ExportOnly(),
  });
}

describe('cross-check with @hpke/core', () => {
  for (const { kem, aead } of SUITES) {
    describe(`${KEM_NAMES[kem]}, HKDF-SHA256, ${AEAD_NAMES[aead]}`, () => {
      const ours = hpkeSuite({ kem, kdf: HPKE_KDF.HKDF_SHA256, aead });
      const theirs = theirSuite(kem, aead);
      const info = text.encode('tollgate cross-check');
      const messages = [
        { pt: text.encode('first'), aad: text.encode('aad 0') },
        { pt: new Uint8Array(0), aad: new Uint8Array(0) },
        { pt: text.encode('x'.repeat(1000)), aad: text.encode('aad 2') },
      ];

      it('behavior: our seal is opened by @hpke/core, and our exports match theirs', async () => {
        const recipient = ours.generateKeyPair();
        const { enc, context } = ours.setupBaseS(recipient.publicKey, info);
        const theirRecipient = await theirs.createRecipientContext({
          recipientKey: await theirs.kem.deserializePrivateKey(recipient.privateKey),
          enc,
          info,
        });
        for (const { pt, aad } of messages) {
          const opened = new Uint8Array(await theirRecipient.open(context.seal(pt, aad), aad));
          expect(x(opened)).toBe(x(pt));
        }
        const exported = new Uint8Array(await theirRecipient.export(text.encode('label'), 48));
        expect(x(context.export(text.encode('label'), 48))).toBe(x(exported));
      });

      it('behavior: @hpke/core seal is opened by us, and their exports match ours', async () => {
        const recipient = ours.generateKeyPair();
        const sender = await theirs.createSenderContext({
          recipientPublicKey: await theirs.kem.deserializePublicKey(recipient.publicKey),
          info,
        });
        const context = ours.setupBaseR(new Uint8Array(sender.enc), recipient.privateKey, info);
        for (const { pt, aad } of messages) {
          const ciphertext = new Uint8Array(await sender.seal(pt, aad));
          expect(x(context.open(ciphertext, aad))).toBe(x(pt));
        }
        const exported = new Uint8Array(await sender.export(text.encode('label'), 48));
        expect(x(context.export(text.encode('label'), 48))).toBe(x(exported));
      });

      it('behavior: DeriveKeyPair agrees with @hpke/core for the same ikm', async () => {
        const ikm = text.encode('a fixed input keying material of enough length');
        const pair = await theirs.kem.deriveKeyPair(ikm);
        const theirPublic = new Uint8Array(await theirs.kem.serializePublicKey(pair.publicKey));
        expect(x(ours.deriveKeyPair(ikm).publicKey)).toBe(x(theirPublic));
      });
    });
  }

  it('behavior: export-only suites export the same secret as @hpke/core', async () => {
    const ours = hpkeSuite({ kem: 0x0020, kdf: 0x0001, aead: 0xffff });
    const theirs = theirSuite(0x0020, 0xffff);
    const recipient = ours.generateKeyPair();
    const { enc, context } = ours.setupBaseS(recipient.publicKey, text.encode('info'));
    const theirRecipient = await theirs.createRecipientContext({
      recipientKey: await theirs.kem.deserializePrivateKey(recipient.privateKey),
      enc,
      info: text.encode('info'),
    });
    const exported = new Uint8Array(await theirRecipient.export(text.encode('ctx'), 32));
    expect(x(context.export(text.encode('ctx'), 32))).toBe(x(exported));
  });
});

// --------------------------------------------------------------------------------------------
// Properties

describe('properties', () => {
  for (const { kem, aead } of [SUITES[0], SUITES[5]]) {
    const suite = hpkeSuite({ kem, kdf: HPKE_KDF.HKDF_SHA256, aead });
    const recipient = suite.generateKeyPair();
    const name = `${KEM_NAMES[kem]}/${AEAD_NAMES[aead]}`;

    it(`behavior: ${name} seal then open returns the plaintext`, () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ maxLength: 300 }),
          fc.uint8Array({ maxLength: 64 }),
          fc.uint8Array({ maxLength: 64 }),
          (plaintext, aad, info) => {
            const { enc, ciphertext } = suite.seal(recipient.publicKey, plaintext, { info, aad });
            expect(ciphertext.length).toBe(plaintext.length + suite.Nt);
            expect(x(suite.open(enc, recipient.privateKey, ciphertext, { info, aad }))).toBe(
              x(plaintext),
            );
          },
        ),
        { numRuns: 50 },
      );
    });

    it(`error: ${name} any single flipped bit of ciphertext, aad or enc is rejected`, () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ minLength: 1, maxLength: 100 }),
          fc.uint8Array({ minLength: 1, maxLength: 32 }),
          fc.constantFrom('ciphertext', 'aad', 'enc'),
          fc.nat(),
          (plaintext, aad, target, position) => {
            const { enc, ciphertext } = suite.seal(recipient.publicKey, plaintext, { aad });
            const tampered = { enc: enc.slice(), ciphertext: ciphertext.slice(), aad: aad.slice() };
            const field = tampered[target as keyof typeof tampered];
            const bit = position % (field.length * 8);
            field[bit >> 3] = field[bit >> 3]! ^ (1 << (bit & 7));
            const code = errorCode(() =>
              suite.open(tampered.enc, recipient.privateKey, tampered.ciphertext, {
                aad: tampered.aad,
              }),
            );
            // A flipped bit of a P-256 enc usually leaves the curve; anything else must fail the tag.
            const allowed =
              target === 'enc'
                ? ['decryption_failed', 'invalid_public_key']
                : ['decryption_failed'];
            expect(allowed).toContain(code);
          },
        ),
        { numRuns: 150 },
      );
    });
  }

  it('behavior: every bit of an X25519 enc, flipped, fails to open (the masked top bit too)', () => {
    const suite = hpkeSuite({ kem: 0x0020, kdf: 0x0001, aead: 0x0001 });
    const recipient = suite.generateKeyPair();
    const { enc, ciphertext } = suite.seal(recipient.publicKey, text.encode('m'));
    for (let bit = 0; bit < enc.length * 8; bit++) {
      const tampered = enc.slice();
      tampered[bit >> 3] = tampered[bit >> 3]! ^ (1 << (bit & 7));
      expect(['decryption_failed', 'invalid_public_key']).toContain(
        errorCode(() => suite.open(tampered, recipient.privateKey, ciphertext)),
      );
    }
  });
});

// --------------------------------------------------------------------------------------------
// Behaviors around the context

describe('contexts', () => {
  const suite = hpkeSuite({ kem: 0x0010, kdf: 0x0001, aead: 0x0001 });
  const secrets = {
    key: new Uint8Array(16).fill(7),
    baseNonce: new Uint8Array(12).fill(9),
    exporterSecret: new Uint8Array(32).fill(1),
  };
  const limit = (1n << 96n) - 1n;

  it('error: the message limit is reached at sequence number 2^96 - 1 (message_limit_reached)', () => {
    const sender = suite.senderContext(secrets, { sequenceNumber: limit - 1n });
    const recipient = suite.recipientContext(secrets, { sequenceNumber: limit - 1n });
    const last = sender.seal(text.encode('last'));
    expect(recipient.open(last)).toEqual(text.encode('last'));
    expectCode(() => sender.seal(text.encode('one more')), 'message_limit_reached');
    expectCode(() => recipient.open(last), 'message_limit_reached');
    expect(sender.sequenceNumber).toBe(limit);
  });

  it('behavior: a failed open does not advance the sequence number', () => {
    const sender = suite.senderContext(secrets);
    const recipient = suite.recipientContext(secrets);
    const ciphertext = sender.seal(text.encode('hello'), text.encode('aad'));
    expectCode(() => recipient.open(ciphertext, text.encode('wrong')), 'decryption_failed');
    expect(recipient.sequenceNumber).toBe(0n);
    expect(recipient.open(ciphertext, text.encode('aad'))).toEqual(text.encode('hello'));
    expect(recipient.sequenceNumber).toBe(1n);
  });

  it('error: messages opened out of order fail (decryption_failed)', () => {
    const sender = suite.senderContext(secrets);
    const recipient = suite.recipientContext(secrets);
    sender.seal(text.encode('zero'));
    const one = sender.seal(text.encode('one'));
    expectCode(() => recipient.open(one), 'decryption_failed');
  });

  it('error: a different info gives a context that cannot open (decryption_failed)', () => {
    const recipient = suite.generateKeyPair();
    const { enc, ciphertext } = suite.seal(recipient.publicKey, text.encode('m'), {
      info: text.encode('a'),
    });
    expectCode(
      () => suite.open(enc, recipient.privateKey, ciphertext, { info: text.encode('b') }),
      'decryption_failed',
    );
  });

  it('behavior: an X25519 private key opens the same whether clamped or not', () => {
    const x25519Suite = hpkeSuite({ kem: 0x0020, kdf: 0x0001, aead: 0x0003 });
    const recipient = x25519Suite.deriveKeyPair(new Uint8Array(32).fill(3));
    const clamped = x25519Suite.serializePrivateKey(recipient.privateKey);
    expect(clamped[0]! & 7).toBe(0);
    expect(clamped[31]! & 0xc0).toBe(0x40);
    const { enc, ciphertext } = x25519Suite.seal(recipient.publicKey, text.encode('m'));
    expect(x25519Suite.open(enc, clamped, ciphertext)).toEqual(text.encode('m'));
    expect(x25519Suite.open(enc, recipient.privateKey, ciphertext)).toEqual(text.encode('m'));
  });

  it('behavior: generateKeyPair draws Nsk bytes from the injected randomBytes', () => {
    const seed = new Uint8Array(32).fill(42);
    const requested: number[] = [];
    const seeded = hpkeSuite({
      kem: 0x0010,
      kdf: 0x0001,
      aead: 0x0001,
      randomBytes: (length) => {
        requested.push(length);
        return seed.slice(0, length);
      },
    });
    expect(x(seeded.generateKeyPair().publicKey)).toBe(x(seeded.deriveKeyPair(seed).publicKey));
    expect(requested).toEqual([32]);
  });

  it('behavior: the suite exposes the RFC 9180 constants', () => {
    const p256 = hpkeSuite({ kem: 0x0010, kdf: 0x0001, aead: 0x0001 });
    expect([
      p256.Nenc,
      p256.Npk,
      p256.Nsk,
      p256.Nsecret,
      p256.Nh,
      p256.Nk,
      p256.Nn,
      p256.Nt,
    ]).toEqual([65, 65, 32, 32, 32, 16, 12, 16]);
    expect(x(p256.suiteId)).toBe(x(text.encode('HPKE')) + '001000010001');
    const chacha = hpkeSuite({ kem: 0x0020, kdf: 0x0001, aead: 0x0003 });
    expect([chacha.Nenc, chacha.Npk, chacha.Nsk, chacha.Nk, chacha.Nn, chacha.Nt]).toEqual([
      32, 32, 32, 32, 12, 16,
    ]);
    const exportOnly = hpkeSuite({ kem: 0x0020, kdf: 0x0001, aead: 0xffff });
    expect([exportOnly.Nk, exportOnly.Nn, exportOnly.Nt]).toEqual([0, 0, 0]);
  });

  it('error: an export-only suite cannot seal or open (unsupported_suite)', () => {
    const exportOnly = hpkeSuite({ kem: 0x0020, kdf: 0x0001, aead: 0xffff });
    const recipient = exportOnly.generateKeyPair();
    const { enc, context } = exportOnly.setupBaseS(recipient.publicKey, new Uint8Array(0));
    const receiver = exportOnly.setupBaseR(enc, recipient.privateKey, new Uint8Array(0));
    expect(x(context.export(text.encode('c'), 16))).toBe(x(receiver.export(text.encode('c'), 16)));
    expectCode(() => context.seal(text.encode('m')), 'unsupported_suite');
    expectCode(() => receiver.open(new Uint8Array(16)), 'unsupported_suite');
    expectCode(() => exportOnly.seal(recipient.publicKey, text.encode('m')), 'unsupported_suite');
  });
});

// --------------------------------------------------------------------------------------------
// Wrong inputs

describe('wrong inputs', () => {
  const p256 = hpkeSuite({ kem: 0x0010, kdf: 0x0001, aead: 0x0001 });
  const x25519 = hpkeSuite({ kem: 0x0020, kdf: 0x0001, aead: 0x0001 });
  const pRecipient = p256.deriveKeyPair(new Uint8Array(32).fill(1));
  const xRecipient = x25519.deriveKeyPair(new Uint8Array(32).fill(2));
  const pSealed = p256.seal(pRecipient.publicKey, text.encode('m'));
  const pContext = p256.setupBaseS(pRecipient.publicKey, new Uint8Array(0)).context;
  const pOrder = hexToBytes('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
  const offCurve = pRecipient.publicKey.slice();
  offCurve[64] = offCurve[64]! ^ 1;
  const compressed = Uint8Array.of(0x02, ...pRecipient.publicKey.subarray(1, 33));
  // u = 1 and u = 0 are points of small order; u = p + 1 is a non-canonical encoding of 1.
  const xSmallOrder = Uint8Array.of(1, ...new Uint8Array(31));
  const xZero = new Uint8Array(32);
  const xNonCanonicalOne = hexToBytes(
    'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  );
  const anyArg = (value: unknown) => value as Uint8Array;

  const cases: { name: string; code: EciesErrorCode; run: () => unknown }[] = [
    {
      name: 'suite: unknown KEM 0x0011',
      code: 'unsupported_suite',
      run: () => hpkeSuite({ kem: 0x0011, kdf: 1, aead: 1 }),
    },
    {
      name: 'suite: unknown KDF 0x0002',
      code: 'unsupported_suite',
      run: () => hpkeSuite({ kem: 0x0010, kdf: 2, aead: 1 }),
    },
    {
      name: 'suite: unknown AEAD 0x0004',
      code: 'unsupported_suite',
      run: () => hpkeSuite({ kem: 0x0010, kdf: 1, aead: 4 }),
    },
    {
      name: 'suite: identifier as a string',
      code: 'invalid_type',
      run: () => hpkeSuite({ kem: '16' as unknown as number, kdf: 1, aead: 1 }),
    },
    {
      name: 'suite: no parameters',
      code: 'invalid_type',
      run: () => hpkeSuite(undefined as never),
    },
    {
      name: 'deriveKeyPair: ikm as a string',
      code: 'invalid_type',
      run: () => p256.deriveKeyPair(anyArg('seed')),
    },
    {
      name: 'deriveKeyPair: ikm shorter than Nsk',
      code: 'invalid_length',
      run: () => p256.deriveKeyPair(new Uint8Array(31)),
    },
    {
      name: 'P-256 public key: an array of numbers',
      code: 'invalid_type',
      run: () => p256.deserializePublicKey(anyArg([...pRecipient.publicKey])),
    },
    {
      name: 'P-256 public key: 64 bytes',
      code: 'invalid_length',
      run: () => p256.deserializePublicKey(pRecipient.publicKey.subarray(1)),
    },
    {
      name: 'P-256 public key: compressed, 33 bytes',
      code: 'invalid_length',
      run: () => p256.deserializePublicKey(compressed),
    },
    {
      name: 'P-256 public key: prefix 0x05',
      code: 'invalid_public_key',
      run: () => p256.deserializePublicKey(Uint8Array.of(5, ...pRecipient.publicKey.subarray(1))),
    },
    {
      name: 'P-256 public key: off the curve',
      code: 'invalid_public_key',
      run: () => p256.deserializePublicKey(offCurve),
    },
    {
      name: 'P-256 public key: all zero after 0x04',
      code: 'invalid_public_key',
      run: () => p256.deserializePublicKey(Uint8Array.of(4, ...new Uint8Array(64))),
    },
    {
      name: 'P-256 setupBaseS: off-curve recipient key',
      code: 'invalid_public_key',
      run: () => p256.setupBaseS(offCurve, new Uint8Array(0)),
    },
    {
      name: 'P-256 setupBaseR: off-curve enc',
      code: 'invalid_public_key',
      run: () => p256.setupBaseR(offCurve, pRecipient.privateKey, new Uint8Array(0)),
    },
    {
      name: 'P-256 setupBaseR: 64-byte enc',
      code: 'invalid_length',
      run: () => p256.setupBaseR(pSealed.enc.subarray(1), pRecipient.privateKey, new Uint8Array(0)),
    },
    {
      name: 'P-256 private key: zero',
      code: 'invalid_private_key',
      run: () => p256.deserializePrivateKey(new Uint8Array(32)),
    },
    {
      name: 'P-256 private key: the group order',
      code: 'invalid_private_key',
      run: () => p256.deserializePrivateKey(pOrder),
    },
    {
      name: 'P-256 private key: all 0xff',
      code: 'invalid_private_key',
      run: () => p256.getPublicKey(new Uint8Array(32).fill(0xff)),
    },
    {
      name: 'P-256 private key: 31 bytes',
      code: 'invalid_length',
      run: () => p256.deserializePrivateKey(new Uint8Array(31).fill(1)),
    },
    {
      name: 'P-256 setupBaseR: zero private key',
      code: 'invalid_private_key',
      run: () => p256.setupBaseR(pSealed.enc, new Uint8Array(32), new Uint8Array(0)),
    },
    {
      name: 'P-256 setupBaseR: private key as a hex string',
      code: 'invalid_type',
      run: () => p256.setupBaseR(pSealed.enc, anyArg('00'.repeat(32)), new Uint8Array(0)),
    },
    {
      name: 'X25519 public key: 33 bytes',
      code: 'invalid_length',
      run: () => x25519.deserializePublicKey(new Uint8Array(33).fill(9)),
    },
    {
      name: 'X25519 public key: 31 bytes',
      code: 'invalid_length',
      run: () => x25519.setupBaseS(new Uint8Array(31).fill(9), new Uint8Array(0)),
    },
    {
      name: 'X25519 public key: u = 0',
      code: 'invalid_public_key',
      run: () => x25519.deserializePublicKey(xZero),
    },
    {
      name: 'X25519 public key: u = 1 (small order)',
      code: 'invalid_public_key',
      run: () => x25519.setupBaseS(xSmallOrder, new Uint8Array(0)),
    },
    {
      name: 'X25519 enc: u = p + 1 (non-canonical small order)',
      code: 'invalid_public_key',
      run: () => x25519.setupBaseR(xNonCanonicalOne, xRecipient.privateKey, new Uint8Array(0)),
    },
    {
      name: 'X25519 private key: 64 bytes',
      code: 'invalid_length',
      run: () => x25519.deserializePrivateKey(new Uint8Array(64)),
    },
    {
      name: 'setupBaseS: info as a string',
      code: 'invalid_type',
      run: () => p256.setupBaseS(pRecipient.publicKey, anyArg('info')),
    },
    {
      name: 'setupBaseS: info missing',
      code: 'invalid_type',
      run: () => p256.setupBaseS(pRecipient.publicKey, anyArg(undefined)),
    },
    {
      name: 'setupBaseS: ikmE shorter than Nsk',
      code: 'invalid_length',
      run: () =>
        p256.setupBaseS(pRecipient.publicKey, new Uint8Array(0), { ikmE: new Uint8Array(16) }),
    },
    {
      name: 'seal: plaintext as a string',
      code: 'invalid_type',
      run: () => pContext.seal(anyArg('hello')),
    },
    {
      name: 'seal: aad as an ArrayBuffer',
      code: 'invalid_type',
      run: () => pContext.seal(new Uint8Array(1), anyArg(new ArrayBuffer(1))),
    },
    {
      name: 'open: ciphertext shorter than the tag',
      code: 'ciphertext_too_short',
      run: () => p256.open(pSealed.enc, pRecipient.privateKey, new Uint8Array(15)),
    },
    {
      name: 'open: truncated ciphertext',
      code: 'decryption_failed',
      run: () => p256.open(pSealed.enc, pRecipient.privateKey, pSealed.ciphertext.subarray(1)),
    },
    {
      name: 'open: wrong private key',
      code: 'decryption_failed',
      run: () => p256.open(pSealed.enc, p256.generateKeyPair().privateKey, pSealed.ciphertext),
    },
    {
      name: 'open: ciphertext as a DataView',
      code: 'invalid_type',
      run: () =>
        p256.open(pSealed.enc, pRecipient.privateKey, anyArg(new DataView(new ArrayBuffer(32)))),
    },
    {
      name: 'export: length as a string',
      code: 'invalid_type',
      run: () => pContext.export(new Uint8Array(0), '32' as unknown as number),
    },
    {
      name: 'export: length 1.5',
      code: 'invalid_type',
      run: () => pContext.export(new Uint8Array(0), 1.5),
    },
    {
      name: 'export: length above 255 * Nh',
      code: 'invalid_length',
      run: () => pContext.export(new Uint8Array(0), 255 * 32 + 1),
    },
    {
      name: 'export: negative length',
      code: 'invalid_length',
      run: () => pContext.export(new Uint8Array(0), -1),
    },
    {
      name: 'export: exporter context as a string',
      code: 'invalid_type',
      run: () => pContext.export(anyArg('label'), 32),
    },
    {
      name: 'context: key of the wrong length',
      code: 'invalid_length',
      run: () =>
        p256.senderContext({
          key: new Uint8Array(32),
          baseNonce: new Uint8Array(12),
          exporterSecret: new Uint8Array(32),
        }),
    },
    {
      name: 'context: sequence number as a number',
      code: 'invalid_type',
      run: () =>
        p256.senderContext(
          {
            key: new Uint8Array(16),
            baseNonce: new Uint8Array(12),
            exporterSecret: new Uint8Array(32),
          },
          { sequenceNumber: 1 as unknown as bigint },
        ),
    },
    {
      name: 'aeadSeal: nonce of 8 bytes',
      code: 'invalid_length',
      run: () => p256.aeadSeal(new Uint8Array(16), new Uint8Array(8), new Uint8Array(1)),
    },
    {
      name: 'keySchedule: shared secret of 16 bytes',
      code: 'invalid_length',
      run: () => p256.keySchedule(new Uint8Array(16), new Uint8Array(0)),
    },
    {
      name: 'expand: prk shorter than Nh',
      code: 'invalid_length',
      run: () => p256.expand(new Uint8Array(16), new Uint8Array(0), 16),
    },
  ];

  for (const { name, code, run } of cases) {
    it(`error: ${name} (${code})`, () => {
      expectCode(run, code);
    });
  }

  it('behavior: a valid public key round-trips through deserialize and serialize unchanged', () => {
    expect(x(p256.serializePublicKey(p256.deserializePublicKey(pRecipient.publicKey)))).toBe(
      x(pRecipient.publicKey),
    );
    expect(x(x25519.deserializePublicKey(xRecipient.publicKey))).toBe(x(xRecipient.publicKey));
  });
});

describe('a native Diffie-Hellman in place of @noble', () => {
  const nodeP256 = (privateKey: Uint8Array, publicKey: Uint8Array) => {
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(privateKey);
    return new Uint8Array(ecdh.computeSecret(publicKey));
  };

  it('behavior: with node:crypto ECDH, RFC 9180 A.3 (P-256) comes out the same, both ways', () => {
    const vector = loadVector('rfc9180-a.3.json');
    const suite = hpkeSuite({
      kem: vector.kem_id,
      kdf: vector.kdf_id,
      aead: vector.aead_id,
      dh: nodeP256,
    });
    expect(x(suite.encap(h(vector.pkRm), { ikmE: h(vector.ikmE) }).sharedSecret)).toBe(
      vector.shared_secret,
    );
    expect(x(suite.decap(h(vector.enc), h(vector.skRm)))).toBe(vector.shared_secret);
    const first = vector.encryptions[0]!;
    const context = suite.setupBaseR(h(vector.enc), h(vector.skRm), h(vector.info));
    expect(x(context.open(h(first.ct), h(first.aad)))).toBe(first.pt);
  });

  it('error: a native Diffie-Hellman that fails or returns nothing usable is invalid_public_key', () => {
    const vector = loadVector('rfc9180-a.3.json');
    for (const dh of [
      () => {
        throw new Error('native failure');
      },
      () => new Uint8Array(32),
      () => new Uint8Array(31).fill(1),
    ]) {
      const suite = hpkeSuite({ kem: vector.kem_id, kdf: vector.kdf_id, aead: vector.aead_id, dh });
      expectCode(() => suite.decap(h(vector.enc), h(vector.skRm)), 'invalid_public_key');
    }
    expectCode(
      () => hpkeSuite({ kem: 0x0010, kdf: 1, aead: 1, dh: 'fast' as never }),
      'invalid_type',
    );
  });
});
