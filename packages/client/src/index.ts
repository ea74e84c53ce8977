/**
 * @module @tollgate/client
 *
 * The caller's side of a Tollgate gateway: a `fetch` that encrypts each request end to end
 * and decrypts the answer as it arrives, and a `fetch` that pays for requests with x402, to hand
 * to the `openai` SDK or use alone, in Node and in browsers.
 */
export {
  createEncryptedFetch,
  type EncryptedFetchOptions,
  type EncryptionFormat,
} from './encrypted-fetch.js';
export {
  CLIENT_ERROR_CODES,
  ClientError,
  type ClientErrorCode,
  isClientError,
  isPaymentError,
  PAYMENT_ERROR_CODES,
  PaymentError,
  type PaymentErrorCode,
} from './errors.js';
export {
  createPayingFetch,
  getPaymentReceipt,
  type PayingFetchOptions,
  type PaymentSigner,
  type PaymentTerms,
  type TransferWithAuthorizationTypedData,
} from './pay.js';
