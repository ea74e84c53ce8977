/**
 * Who may call the gateway: the authentication and admission seam.
 *
 * The routes only see {@link AccessControl}. The gateway backs it with @tollgate/tenancy
 * ({@link createTenancyAccess}: tenants, hashed keys, limits, reserve-then-settle admission,
 * usage records); {@link createStaticKeyAccess} is a store-free stand-in for embedding and
 * tests.
 */
import { hash, timingSafeEqual } from 'node:crypto';
import type { DispatchOutcome } from '@tollgate/backends';
import { type Operation, type OperationRequest, TollgateError } from '@tollgate/protocol';
import type { Caller, Tenancy } from '@tollgate/tenancy';
import { ConfigError } from './config.js';

/** The authenticated caller. */
export interface Principal {
  /**
   * Stable id for logs and usage records, never the key itself: a tenant id (`tn_...`),
   * `static:<8 hex digits of the key's SHA-256>`, `x402:<payer address>`, `x402` (a caller
   * without a key who has yet to pay), or `anonymous`.
   */
  id: string;
  /**
   * `tenant`: an issued key; `static-key`: a key from the config (an unlimited tenant);
   * `payer`: pays per request with x402; `anonymous`: the gateway runs open (loopback only,
   * before any key exists).
   */
  kind: 'tenant' | 'static-key' | 'payer' | 'anonymous';
  /** The issued key's public id, or the static key's 8 hex digits (empty for payers); safe to log. */
  keyId: string;
  /** The tenancy caller behind it, when tenancy authenticated it. */
  caller?: Caller;
}

/** Where a request comes from, for throttling failed authentications and the audit log. */
export interface RequestOrigin {
  remoteAddress?: string | null;
  requestId?: string | null;
}

/** What {@link AccessControl.admit} looks at. */
export interface AdmissionRequest {
  operation: Operation;
  /** The model as the caller named it (before alias resolution). */
  model: string;
  /** The validated request body. */
  body: OperationRequest[Operation];
  /** The request's id, kept with its usage record. */
  requestId?: string;
  /** The model's context window in tokens, when its servers report one. */
  contextLength?: number;
}

/** How an admitted request ended, as handed to {@link Admission.settle}. */
export type SettleOutcome = (
  | DispatchOutcome
  | { status: 'failed'; httpStatus: number; error: unknown; firstByteMs?: undefined }
) & {
  /** The backend that answered, when one did. */
  backend?: string;
  /** The recorded x402 payment that paid for the request, when one did. */
  paymentId?: string;
};

/** A request let through: headers to add to its response, and the settlement to call once. */
export interface Admission {
  /** The admission's id (its usage record's), when it is metered. */
  id?: string;
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
  authenticate(request: Request, origin?: RequestOrigin): Promise<Principal>;
  /**
   * Decides whether the caller may run this request now.
   * @throws {TollgateError} e.g. `model_not_allowed` (403) or `rate_limit_exceeded` (429) later.
   */
  admit(principal: Principal, request: AdmissionRequest): Promise<Admission>;
  /** The principal of an x402 payer whose payment was verified. @default `x402:<address>`, unlimited */
  payer?(address: string): Principal;
}

/** A caller without a key on a gateway that takes payments: the payment decides who it is. */
export const UNPAID: Principal = Object.freeze({ id: 'x402', kind: 'payer', keyId: '' });

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
      return { id: `static:${keyId}`, kind: 'static-key', keyId };
    },
    async admit() {
      return noAdmission;
    },
    payer(address) {
      return { id: `x402:${address.toLowerCase()}`, kind: 'payer', keyId: '' };
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

const ANONYMOUS: Caller = {
  kind: 'anonymous',
  tenantId: 'anonymous',
  tenantName: null,
  keyId: null,
  limits: {},
};

function toPrincipal(caller: Caller): Principal {
  const keyId =
    caller.keyId ?? (caller.kind === 'payer' ? '' : caller.tenantId.replace(/^static:/, ''));
  return { id: caller.tenantId, kind: caller.kind, keyId, caller };
}

/** Access backed by tenancy, with a switch for the open mode of a gateway that has no keys yet. */
export interface TenancyAccess extends AccessControl {
  /** Stops letting callers without a key in (the first tenant was just created). */
  closeAnonymous(): void;
  /** Whether callers without a key are let in. */
  readonly anonymous: boolean;
}

/**
 * Access through tenancy: keys authenticate to tenants (static keys to unlimited tenants),
 * admission applies their limits and settlement records their usage. With `anonymous`,
 * a caller without a key is let in as `anonymous` (still metered) until
 * {@link TenancyAccess.closeAnonymous}; a presented key is always checked.
 */
export function createTenancyAccess(
  tenancy: Tenancy,
  options: { anonymous?: boolean } = {},
): TenancyAccess {
  let anonymous = options.anonymous ?? false;
  return {
    get anonymous() {
      return anonymous;
    },
    closeAnonymous() {
      anonymous = false;
    },
    async authenticate(request, origin) {
      const key = presentedKey(request);
      if (key === undefined && anonymous) return toPrincipal(ANONYMOUS);
      return toPrincipal(await tenancy.authenticate(key, origin ?? {}));
    },
    payer(address) {
      return toPrincipal(tenancy.payer(address));
    },
    async admit(principal, request) {
      const admission = await tenancy.admit(principal.caller ?? ANONYMOUS, {
        operation: request.operation,
        model: request.model,
        body: request.body,
        requestId: request.requestId ?? null,
        streamed: (request.body as { stream?: unknown }).stream === true,
        ...(request.contextLength !== undefined ? { contextLength: request.contextLength } : {}),
      });
      return {
        id: admission.id,
        headers: admission.headers,
        settle: (outcome) =>
          admission.settle({
            status: outcome.status,
            httpStatus: outcome.httpStatus,
            usage: 'usage' in outcome ? outcome.usage : undefined,
            backend: outcome.backend ?? null,
            firstTokenMs: outcome.firstByteMs ?? null,
            streamed: 'streamed' in outcome ? outcome.streamed : undefined,
            paymentId: outcome.paymentId ?? null,
          }),
      };
    },
  };
}

/** What {@link resolveAccess} decided. */
export interface ResolvedAccess {
  access: TenancyAccess;
  /** `keys`: callers need a key; `open`: anyone on this machine may call until a key exists. */
  mode: 'keys' | 'open';
  /** Set in `open` mode: log it loudly at start. */
  warning?: string;
}

/** How an operator creates the first key, for the open-mode warning and the refusal. */
export const FIRST_KEY_HELP = [
  'Create the first key with the CLI (stop the gateway first when it uses the embedded database):',
  '  pnpm tollgate tenants create my-team',
  '  pnpm tollgate keys issue my-team',
  'or through the admin API (set TOLLGATE_ADMIN_KEY, then POST /admin/tenants and POST /admin/tenants/<id>/keys),',
  'or set static keys: TOLLGATE_API_KEYS=$(openssl rand -hex 24).',
].join('\n');

/**
 * The one place that decides how callers are authenticated:
 * - static keys configured, tenants in the store, or x402 payments on: callers need a key
 *   (or a payment), whatever the host;
 * - neither, loopback host (127.0.0.1, ::1, localhost): open (callers without a key are let
 *   in as `anonymous`, metered) until the first tenant is created, with a warning to log;
 * - neither, any other host: refused, because the gateway would be open to the network.
 *
 * @throws {ConfigError} when nothing can authenticate callers and the host is not a loopback address.
 */
export function resolveAccess(
  config: { host: string; apiKeys: string[]; payments?: unknown },
  tenancy: Tenancy,
  tenantCount: number,
): ResolvedAccess {
  if (config.apiKeys.length > 0 || tenantCount > 0 || config.payments !== undefined) {
    return { access: createTenancyAccess(tenancy), mode: 'keys' };
  }
  if (!isLoopbackHost(config.host)) {
    throw new ConfigError([
      `host: "${config.host}" is reachable from other machines but there are no API keys yet, so anyone could use your models. Listen on 127.0.0.1 until a key exists.\n${FIRST_KEY_HELP}`,
    ]);
  }
  return {
    access: createTenancyAccess(tenancy, { anonymous: true }),
    mode: 'open',
    warning: `NO API KEYS EXIST YET: the gateway accepts every request from this machine without a key (usage is recorded as "anonymous") until the first tenant is created.\n${FIRST_KEY_HELP}`,
  };
}
