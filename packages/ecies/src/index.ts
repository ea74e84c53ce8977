/**
 * @module @tollgate/ecies
 *
 * Request and response encryption for LLM APIs, pure and isomorphic (browsers, Node, edge) on
 * @noble/curves, @noble/hashes and @noble/ciphers: the Obol-compatible P-256 ECIES format and
 * Apple's SecKeyCreateEncryptedData variant, HPKE base mode (RFC 9180), Binary HTTP
 * (RFC 9292) and Oblivious HTTP (RFC 9458, with chunked messages for streams).
 */
export { ECIES_ERROR_CODES, EciesError, type EciesErrorCode, isEciesError } from './errors.js';
