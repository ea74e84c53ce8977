/**
 * Who may call the gateway: the authentication and admission seam.
 *
 * The routes only see {@link AccessControl}. Today it is backed by a static list of keys
 * (`TOLLGATE_API_KEYS`); the tenancy package replaces it with tenants, hashed keys in a
 * store, limits and reserve-then-settle admission, without the routes changing.
 */
import { hash, timingSafeEqual } from 'node:crypto';
import type { DispatchOutcome } from '@tollgate/backends';
import { type Operation, type OperationRequest, TollgateError } from '@tollgate/protocol';
import { ConfigError } from './config.js';

/** The authenticated caller. */
export interface Principal {
  /** Stable id for logs and usage records, e.g. `key:1a2b3c4d`; never the key itself. */
  id: string;
  /** `static-key`: a key from the config; `anonymous`: the gateway runs open (loopback only). */
  kind: 'static-key' | 'anonymous';
  /** First 8 hex digits of the key's SHA-256, safe to log. */
  keyId: string;
}

/** What {@link AccessControl.admit} looks at. */
export interface AdmissionRequest {
  operation: Operation;
  /** The model as the caller named it (before alias resolution). */
  model: string;
  /** The validated request body. */
  body: OperationRequest[Operation];
}

/** How an admitted request ended, as handed to {@link Admission.settle}. */
export type SettleOutcome =
  | DispatchOutcome
  | { status: 'failed'; httpStatus: number; error: unknown };

/** A request let through: headers to add to its response, and the settlement to call once. */
export interface Admission {
  /** Added to the response (e.g. `x-ratelimit-*` later). */
  headers: Record<string, string>;
  /** Called exactly once when the request has ended, whatever the way. Must not reject. */
  settle(outcome: SettleOutcome): Promise<void>;
}

/** The seam between the routes and whoever decides who may call what. */
export interface AccessControl {
  /**
   * Identifies the caller.
   * @throws {TollgateError} `missing_api_key` or `invalid_api_key` (401).
   */
  authenticate(request: Request): Promise<Principal>;
  /**
   * Decides whether the caller may run this request now.
   * @throws {TollgateError} e.g. `model_not_allowed` (403) or `rate_limit_exceeded` (429) later.
   */
  admit(principal: Principal, request: AdmissionRequest): Promise<Admission>;
}

const noAdmission: Admission = Object.freeze({ headers: {}, settle: async () => {} });

function sha256(value: string): Buffer {
  // One-shot hashing: no Hash object (and native handle) per request.
  return hash('sha256', value, 'buffer');
}

/** Reads the key from `Authorization: Bearer <key>` or `x-api-key: <key>`. */
function presentedKey(request: Request): string | undefined {
  const authorization = request.headers.get('authorization');
  if (authorization !== null && authorization.trim() !== '') {
    const match = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    if (!match) {
      throw new TollgateError(
        'invalid_api_key',
        'The Authorization header must be "Bearer <your API key>"; other schemes are not accepted.',
      );
    }
    return match[1]!.trim();
  }
  const header = request.headers.get('x-api-key');
  return header !== null && header.trim() !== '' ? header.trim() : undefined;
}

/**
 * Access by a fixed list of keys, each an unlimited caller. Keys are kept only as SHA-256
 * hashes and compared in constant time. Admission lets everything through.
 *
 * @param keys - the accepted keys, as configured.
 * @example
 * ```ts
 * const access = createStaticKeyAccess(['sk-local-1']);
 * const principal = await access.authenticate(new Request('http://x/', { headers: { authorization: 'Bearer sk-local-1' } }));
 * ```
 */
export function createStaticKeyAccess(keys: string[]): AccessControl {
  const hashes = [...new Set(keys)].map(sha256);
  return {
    async authenticate(request) {
      const key = presentedKey(request);
      if (key === undefined) {
        throw new TollgateError(
          'missing_api_key',
          'This gateway needs an API key. Send it as "Authorization: Bearer <key>" (what the OpenAI SDKs do with apiKey) or in an "x-api-key" header.',
        );
      }
      const presented = sha256(key);
      let matched = false;
      // Compare against every stored hash, so the time taken does not tell which one matched.
      for (const hash of hashes) matched = timingSafeEqual(presented, hash) || matched;
      if (!matched) {
        throw new TollgateError(
          'invalid_api_key',
          'The API key is not valid. Check it for typos; keys are case-sensitive.',
        );
      }
      const keyId = presented.toString('hex').slice(0, 8);
      return { id: `key:${keyId}`, kind: 'static-key', keyId };
    },
    async admit() {
      return noAdmission;
    },
  };
}

/** Access that lets every caller in as `anonymous`. Only {@link resolveAccess} should pick it. */
export function createOpenAccess(): AccessControl {
  return {
    async authenticate() {
      return { id: 'anonymous', kind: 'anonymous', keyId: 'none' };
    },
    async admit() {
      return noAdmission;
    },
  };
}

/** Whether a listen address only accepts connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  const value = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '');
  return (
    value === 'localhost' ||
    value === '::1' ||
    /^127(\.\d{1,3}){3}$/.test(value) ||
    /^::ffff:127(\.\d{1,3}){3}$/.test(value)
  );
}

/** What {@link resolveAccess} decided. */
export interface ResolvedAccess {
  access: AccessControl;
  /** `keys`: callers need a configured key; `open`: anyone on this machine may call. */
  mode: 'keys' | 'open';
  /** Set in `open` mode: log it loudly at start. */
  warning?: string;
}

/**
 * The one place that decides how callers are authenticated from the configuration:
 * - keys configured: only those keys are accepted, whatever the host;
 * - no keys, loopback host (127.0.0.1, ::1, localhost): open, with a warning to log;
 * - no keys, any other host: refused, because the gateway would be open to the network.
 *
 * @throws {ConfigError} when no keys are set and the host is not a loopback address.
 */
export function resolveAccess(config: { host: string; apiKeys: string[] }): ResolvedAccess {
  if (config.apiKeys.length > 0)
    return { access: createStaticKeyAccess(config.apiKeys), mode: 'keys' };
  if (!isLoopbackHost(config.host)) {
    throw new ConfigError([
      `host: "${config.host}" is reachable from other machines but no API keys are set, so anyone could use your models. Set TOLLGATE_API_KEYS (comma-separated keys, e.g. TOLLGATE_API_KEYS=$(openssl rand -hex 24)) or api_keys in tollgate.yaml, or listen on 127.0.0.1.`,
    ]);
  }
  return {
    access: createOpenAccess(),
    mode: 'open',
    warning:
      'NO API KEYS ARE SET: the gateway accepts every request from this machine without a key. Set TOLLGATE_API_KEYS (or api_keys in tollgate.yaml) before exposing it.',
  };
}
