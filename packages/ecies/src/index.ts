/**
 * @module @tollgate/ecies
 *
 * Request and response encryption for LLM APIs, pure and isomorphic (browsers, Node, edge) on
 * @noble/curves, @noble/hashes and @noble/ciphers: the Obol-compatible P-256 ECIES format and
 * Apple's SecKeyCreateEncryptedData variant, HPKE base mode (RFC 9180) and Binary HTTP
 * (RFC 9292), the parts Oblivious HTTP (RFC 9458) is built from.
 */
export {
  APPLE_AES_KEY_LENGTH,
  APPLE_IV_LENGTH,
  APPLE_MIN_MESSAGE_LENGTH,
  APPLE_TAG_LENGTH,
  type AppleEncryptOptions,
  appleDecrypt,
  appleEncrypt,
} from './apple.js';
export {
  type BhttpDecoder,
  type BhttpEncodeOptions,
  type BhttpField,
  type BhttpFieldsInput,
  type BhttpFraming,
  type BhttpInformationalResponse,
  type BhttpRequest,
  type BhttpRequestDecoder,
  type BhttpRequestEncoder,
  type BhttpRequestEvent,
  type BhttpRequestHeadInput,
  type BhttpRequestInput,
  type BhttpResponse,
  type BhttpResponseDecoder,
  type BhttpResponseEncoder,
  type BhttpResponseEvent,
  type BhttpResponseHeadInput,
  type BhttpResponseInput,
  type BhttpStreamEncoder,
  createBhttpRequestDecoder,
  createBhttpRequestEncoder,
  createBhttpResponseDecoder,
  createBhttpResponseEncoder,
  decodeBhttpRequest,
  decodeBhttpResponse,
  encodeBhttpRequest,
  encodeBhttpResponse,
} from './bhttp.js';
export { ECIES_ERROR_CODES, EciesError, type EciesErrorCode, isEciesError } from './errors.js';
export {
  HPKE_AEAD,
  HPKE_KDF,
  HPKE_KEM,
  type HpkeAeadId,
  type HpkeContextBase,
  type HpkeContextOptions,
  type HpkeContextSecrets,
  type HpkeKdfId,
  type HpkeKemId,
  type HpkeKeyPair,
  type HpkeRecipientContext,
  type HpkeSenderContext,
  type HpkeSenderOptions,
  type HpkeSuite,
  type HpkeSuiteParameters,
  hpkeSuite,
} from './hpke.js';
export {
  activeKeys,
  createKeySet,
  type EncryptionKey,
  type KeySet,
  type KeySetOptions,
  parseKeySet,
  rotateKeySet,
  serializeKeySet,
} from './keyset.js';
export {
  type GenerateP256KeyPairOptions,
  generateP256KeyPair,
  OBOL_MIN_MESSAGE_LENGTH,
  OBOL_NONCE_LENGTH,
  OBOL_TAG_LENGTH,
  OBOL_VERSION,
  type ObolEncryptOptions,
  obolDecrypt,
  obolEncrypt,
  P256_PRIVATE_KEY_LENGTH,
  P256_PUBLIC_KEY_LENGTH,
  type P256KeyPair,
  p256PublicKeyFromHex,
  p256PublicKeyFromPrivateKey,
  p256PublicKeyToHex,
  type RandomBytes,
} from './obol.js';
export {
  decodeVarint,
  decodeVarintBigInt,
  encodeVarint,
  MAX_VARINT,
  type Varint,
} from './varint.js';
