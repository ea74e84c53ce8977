/**
 * Tenancy as one object: authenticate a key to a tenant (or make the caller of an x402
 * payer), admit a request against its limits (reserve, then settle with the real usage),
 * record usage, payments and audit, and the admin operations on tenants and keys.
 * Framework-free: the gateway (or any server) calls it.
 */
import { formatIssuePath, TollgateError } from '@tollgate/protocol';
import { createId, generateKey, hashSecret, parseKey, secretMatches } from './keys.js';
import { minuteStartOf } from './limiter-common.js';
import { createMemoryLimiter } from './limiter-memory.js';
import {
  applyLimitsInput,
  modelAllowed,
  type TenantLimitsInput,
  tenantLimitsInputSchema,
  toLimiterLimits,
} from './limits.js';
import {
  completionAllowance,
  costMicroUsd,
  estimatePromptTokens,
  type PriceTable,
  priceFor,
} from './metering.js';
import { type PaymentInput, payerCaller, toPaymentRecord } from './payments.js';
import { createRecorder, type Recorder } from './recorder.js';
import type {
  ApiKeyRecord,
  AuditEntry,
  AuditQuery,
  Limiter,
  LimitReason,
  PaymentQuery,
  PaymentRecord,
  RateState,
  TenancyStore,
  Tenant,
  TenantLimits,
  UsageEvent,
  UsageQuery,
  UsageRow,
} from './types.js';

/** Options for {@link createTenancy}. */
export interface TenancyOptions {
  store: TenancyStore;
  /** Counters and slots. @default createMemoryLimiter() */
  limiter?: Limiter;
  /** Journal directory for crash-safe records (see {@link createRecorder}); the gateway sets it. */
  journalDir?: string;
  /** Names this process's reservations in a shared database. @default 'default' */
  instanceId?: string;
  /** Prices per model (USD per million tokens), for spend budgets and usage cost. */
  prices?: PriceTable;
  /** Completion tokens reserved when a request sets no max_tokens. @default 1024 */
  defaultMaxTokens?: number;
  /** Keys accepted as unlimited tenants (`static:<8 hex digits of their SHA-256>`). */
  staticKeys?: readonly string[];
  /**
   * The limits of every x402 payer ({@link Tenancy.payer}), each payer counted on its own
   * (per address). @default {} (unlimited: each request is paid for)
   */
  payerLimits?: TenantLimits;
  /** How long a looked-up key stays cached; a revocation elsewhere takes this long to apply here. @default 10000 */
  keyCacheMs?: number;
  /**
   * How often the concurrency slots of requests still running are renewed in a limiter whose
   * slots expire (Redis, 10-minute leases), so a request longer than a lease keeps its slot.
   * Keep it well under the lease. @default 120000
   */
  slotRenewMs?: number;
  /** Failed authentications from one address per minute before answers slow down. @default 10 */
  authFailuresBeforeDelay?: number;
  /** Clock in ms since the epoch. @default Date.now */
  now?: () => number;
  /** Sleeps between a throttled failed authentication and its answer. */
  sleep?: (ms: number) => Promise<void>;
  /** Told when records stop being written and when they are written again. */
  onHealthChange?: (healthy: boolean, error?: unknown) => void;
  /**
   * Told when the limiter's state (Redis) stops answering, so tenants with limits are refused
   * with 503, and when it answers again. The concurrency slots of requests that end in
   * between are released once it is back.
   */
  onLimiterHealthChange?: (healthy: boolean, error?: unknown) => void;
  /**
   * What tenants with limits get while the limiter's state (Redis) does not answer: `refuse`
   * (fail closed: 503 with `retry-after`), or `serve` (fail open: admitted without their
   * limits being checked, still metered and recorded; rate, concurrency and budget limits
   * do not hold meanwhile). The model allow list holds either way.
   * @default 'refuse'
   */
  limiterUnreachable?: 'refuse' | 'serve';
  /** Told about errors that cannot reach a caller (a failed settlement). */
  onError?: (message: string, error: unknown) => void;
}

/** The caller behind a key. */
export interface Caller {
  /**
   * `tenant`: an issued key; `static-key`: a configured key, an unlimited tenant; `payer`:
   * an x402 payer, who pays per request instead of holding a key ({@link Tenancy.payer});
   * `anonymous`: a caller let in without a key by a server running open (never made here).
   */
  kind: 'tenant' | 'static-key' | 'payer' | 'anonymous';
  /**
   * `tn_...`, `static:<8 hex digits>` for a static key, `x402:<lowercased address>` for a
   * payer, or `anonymous`. Only `tn_...` ids are tenants (listed, named, with keys).
   */
  tenantId: string;
  /** The tenant's name; null for everyone else. */
  tenantName: string | null;
  /** The key's public id; null for static keys and payers. */
  keyId: string | null;
  limits: TenantLimits;
}

/** Where an authentication or admin call comes from, for the audit log and throttling. */
export interface RequestContext {
  remoteAddress?: string | null;
  requestId?: string | null;
  method?: string | null;
  path?: string | null;
}

/** Who makes an admin change, for the audit log. */
export interface ActorContext extends RequestContext {
  /** e.g. `admin` (the admin API), `cli`. */
  actor: string;
}

/** What {@link Tenancy.admit} looks at. */
export interface AdmitRequest {
  /** `chat.completions`, `completions` or `embeddings`. */
  operation: string;
  /** The model as the caller named it. */
  model: string;
  /** The request body, for the token estimate. */
  body: unknown;
  requestId?: string | null;
  streamed?: boolean;
  /**
   * The model's context window in tokens, when known: the completion tokens reserved never
   * exceed what fits after the prompt.
   */
  contextLength?: number;
}

/** How an admitted request ended. */
export interface SettleReport {
  status: 'completed' | 'failed' | 'aborted';
  /** The status the caller got. */
  httpStatus: number;
  /** The upstream's usage, when it reported it. */
  usage?: { prompt_tokens?: number; completion_tokens?: number; total_tokens?: number };
  backend?: string | null;
  /** Time to the first byte of the answer, in ms. */
  firstTokenMs?: number | null;
  streamed?: boolean;
  paymentId?: string | null;
}

/** An admitted request. */
export interface TenancyAdmission {
  /** `ad_...`: the usage event's id. */
  id: string;
  /** `x-ratelimit-*` headers for the response (empty for unlimited callers). */
  headers: Record<string, string>;
  /** Records the outcome and frees what was reserved. Call once; never rejects. */
  settle(report: SettleReport): Promise<void>;
}

/** A key as the admin API shows it (never its secret). */
export interface KeyView {
  id: string;
  tenantId: string;
  name: string;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  replacedBy: string | null;
  /** `active`, `expired`, `revoked`, or `rotating` (replaced, valid until expiresAt). */
  state: 'active' | 'expired' | 'revoked' | 'rotating';
}

/** A newly issued key: the only time its secret is available. */
export interface IssuedKey extends KeyView {
  /** `tg_<id>_<secret>`. */
  key: string;
}

/** The tenancy service. */
export interface Tenancy {
  /**
   * Finds the caller behind a presented key.
   * @throws {TollgateError} `missing_api_key`, `invalid_api_key` (401); `service_unavailable` (503) when the store is down.
   */
  authenticate(presented: string | undefined, context?: RequestContext): Promise<Caller>;
  /**
   * Admits a request: model allow list, then limits, reserving its estimated tokens and spend.
   * @throws {TollgateError} `model_not_allowed` (403); `rate_limit_exceeded`, `concurrency_limit`,
   * `insufficient_quota` (429, with `retry-after` headers); `service_unavailable` (503) when
   * records cannot be written or the limiter is unreachable.
   */
  admit(caller: Caller, request: AdmitRequest): Promise<TenancyAdmission>;

  createTenant(
    input: { name: string; limits?: TenantLimitsInput },
    actor: ActorContext,
  ): Promise<Tenant>;
  listTenants(): Promise<Tenant[]>;
  /** By id (`tn_...`) or name. @throws {TollgateError} `not_found` (404). */
  getTenant(idOrName: string): Promise<Tenant>;
  updateTenant(
    idOrName: string,
    input: { name?: string; limits?: TenantLimitsInput },
    actor: ActorContext,
  ): Promise<Tenant>;
  deleteTenant(idOrName: string, actor: ActorContext): Promise<void>;

  issueKey(
    tenantIdOrName: string,
    input: { name?: string; expiresAt?: Date | null },
    actor: ActorContext,
  ): Promise<IssuedKey>;
  listKeys(tenantIdOrName: string): Promise<KeyView[]>;
  /** Issues a replacement; the old key stays valid for `graceSeconds` (0: refused at once). */
  rotateKey(
    keyId: string,
    input: { graceSeconds: number },
    actor: ActorContext,
  ): Promise<{ key: IssuedKey; previous: KeyView }>;
  revokeKey(keyId: string, actor: ActorContext): Promise<KeyView>;

  /**
   * The caller for an x402 payer whose payment was verified: metered as `x402:<lowercased
   * address>`, with the configured `payerLimits`. Never a tenant (not listed, no keys).
   * @throws {TollgateError} `invalid_request` (400, param `payer`) when `address` is not an
   * EVM address.
   */
  payer(address: string): Caller;
  /**
   * Records an x402 payment as a billing record, batched and journaled with the usage records
   * (never waits for the database). Put the returned `id` in the settle report's `paymentId`
   * and the admission's id in `usageId` to link the two.
   * @returns The record as queued: id (`py_...`) and time filled in, payer lowercased.
   * @throws {TypeError} When a field is missing or malformed (nothing is queued then).
   */
  recordPayment(payment: PaymentInput): PaymentRecord;
  usage(query: UsageQuery): Promise<UsageRow[]>;
  audit(query: AuditQuery): Promise<AuditEntry[]>;
  /**
   * Recorded payments, newest first (what is still queued is not in them; see `flush`).
   * @throws {RangeError} When `limit` is not a positive integer.
   */
  listPayments(query: PaymentQuery): Promise<PaymentRecord[]>;
  /** Adds an audit entry (batched with the usage records). */
  recordAudit(
    entry: Omit<AuditEntry, 'id' | 'at' | 'detail' | 'target'> & Partial<AuditEntry>,
  ): void;

  /** Replays what a previous process left unrecorded. Call once before serving. */
  start(): Promise<{ replayed: number; interrupted: number }>;
  /** False while records cannot be written (admissions are refused with 503 meanwhile). */
  readonly healthy: boolean;
  /**
   * False since the limiter's state (Redis) last failed to answer, until it answers again:
   * tenants with limits are refused with 503 meanwhile. Learnt from admissions, settlements
   * and {@link Tenancy.checkLimiter}.
   */
  readonly limiterHealthy: boolean;
  /**
   * Asks the limiter whether its state answers now (a Redis PING, bounded at 2 s), updates
   * `limiterHealthy` and resolves with it; a limiter without `ping` (the in-memory one) is
   * not asked. Concurrent calls share one check; never rejects.
   */
  checkLimiter(): Promise<boolean>;
  /** Writes what is queued now. */
  flush(): Promise<void>;
  /** Writes what is queued and stops timers; closes the limiter but not the store. */
  close(): Promise<void>;
}

const TENANT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const KEY_NAME = /^[\w .:@/-]{1,64}$/;
const AUTH_WINDOW_MS = 60_000;
const MAX_AUTH_DELAY_MS = 2000;
/** How long {@link Tenancy.checkLimiter} waits for the limiter to answer, in ms. */
const LIMITER_CHECK_MS = 2000;
/** How often the slots of running requests are renewed, in ms (leases last 10 minutes). */
const SLOT_RENEW_MS = 120_000;
/** How often slots the limiter could not release are retried, in ms. */
const RELEASE_RETRY_MS = 1000;
/** A slot held longer than this is given up on: the limiter's lease has ended by then. */
const RELEASE_GIVE_UP_MS = 600_000;
/** Slots kept for a retry at most; the oldest go first (their leases end first). */
const MAX_UNRELEASED = 10_000;

const REASON_CODES: Record<
  LimitReason,
  'rate_limit_exceeded' | 'concurrency_limit' | 'insufficient_quota'
> = {
  requests_per_minute: 'rate_limit_exceeded',
  tokens_per_minute: 'rate_limit_exceeded',
  concurrency: 'concurrency_limit',
  budget_tokens: 'insufficient_quota',
  budget_spend: 'insufficient_quota',
};

/**
 * A duration the way OpenAI writes it in `x-ratelimit-reset-*` (Go's format): `250ms`, `12s`,
 * `6m0s`, `1h2m3s`.
 */
export function formatResetDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.ceil(ms))}ms`;
  const total = Math.ceil(ms / 1000);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  if (hours > 0) return `${hours}h${minutes}m${seconds}s`;
  if (minutes > 0) return `${minutes}m${seconds}s`;
  return `${seconds}s`;
}

function rateHeaders(state: RateState): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [dimension, window] of [
    ['requests', state.requests],
    ['tokens', state.tokens],
  ] as const) {
    if (!window) continue;
    headers[`x-ratelimit-limit-${dimension}`] = String(window.limit);
    headers[`x-ratelimit-remaining-${dimension}`] = String(Math.max(0, window.remaining));
    headers[`x-ratelimit-reset-${dimension}`] = formatResetDuration(window.resetMs);
  }
  return headers;
}

function refusalMessage(
  reason: LimitReason,
  limit: number,
  retryAfterMs: number,
  who: string,
): string {
  const wait = formatResetDuration(retryAfterMs);
  switch (reason) {
    case 'requests_per_minute':
      return `Rate limit reached for ${who}: ${limit} requests per minute. Try again in ${wait}.`;
    case 'tokens_per_minute':
      return `Rate limit reached for ${who}: ${limit} tokens per minute (a request reserves its prompt plus max_tokens). Try again in ${wait}, or lower max_tokens.`;
    case 'concurrency':
      return `Too many requests in flight for ${who}: at most ${limit} at once. Try again when one has finished.`;
    case 'budget_tokens':
      return `The token budget of ${who} is used up (${limit} tokens per period). It renews in ${wait}.`;
    case 'budget_spend':
      return `The spending budget of ${who} is used up ($${(limit / 1_000_000).toFixed(2)} per period). It renews in ${wait}.`;
  }
}

function keyState(key: ApiKeyRecord, now: number): KeyView['state'] {
  if (key.revokedAt) return 'revoked';
  if (key.expiresAt && key.expiresAt.getTime() <= now) return 'expired';
  if (key.replacedBy) return 'rotating';
  return 'active';
}

function toKeyView(key: ApiKeyRecord, now: number): KeyView {
  return {
    id: key.id,
    tenantId: key.tenantId,
    name: key.name,
    createdAt: key.createdAt,
    expiresAt: key.expiresAt,
    revokedAt: key.revokedAt,
    replacedBy: key.replacedBy,
    state: keyState(key, now),
  };
}

function invalid(message: string, param: string): TollgateError {
  return new TollgateError('invalid_request', message, { param });
}

function parseLimits(input: unknown, prefix = 'limits') {
  const result = tenantLimitsInputSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const path = formatIssuePath(
      issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]!] : issue.path,
    );
    const param = path ? `${prefix}.${path}` : prefix;
    const message =
      issue.code === 'unrecognized_keys'
        ? `Unknown limit "${path}". Limits are requests_per_minute, tokens_per_minute, max_concurrent, models and budget.`
        : issue.code === 'invalid_union'
          ? `Invalid ${param}: a budget is {"period": "day" | "month", "tokens"?: n, "spend_usd"?: x}, or a list of one per period.`
          : `Invalid ${param}: ${issue.message}.`;
    throw invalid(message, param);
  }
  return result.data;
}

function checkTenantName(name: unknown): string {
  if (typeof name !== 'string' || !TENANT_NAME.test(name) || name.startsWith('tn_')) {
    throw invalid(
      'A tenant name is 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit (and not with "tn_").',
      'name',
    );
  }
  return name;
}

function storeDown(error: unknown): TollgateError {
  return new TollgateError(
    'service_unavailable',
    'The tenant database cannot be reached right now; try again shortly.',
    { cause: error, headers: { 'retry-after': '5' } },
  );
}

/**
 * Creates the tenancy service over a store (and a limiter, in memory by default).
 *
 * @example
 * ```ts
 * const store = await createPgliteStore({});
 * const tenancy = createTenancy({ store });
 * await tenancy.start();
 * const tenant = await tenancy.createTenant({ name: 'acme', limits: { requests_per_minute: 60 } }, { actor: 'cli' });
 * const { key } = await tenancy.issueKey('acme', { name: 'ci' }, { actor: 'cli' });
 * const caller = await tenancy.authenticate(key);
 * const admission = await tenancy.admit(caller, { operation: 'chat.completions', model: 'llama3', body: {} });
 * await admission.settle({ status: 'completed', httpStatus: 200, usage: { prompt_tokens: 5, completion_tokens: 7 } });
 * ```
 */
export function createTenancy(options: TenancyOptions): Tenancy {
  const { store } = options;
  const limiter = options.limiter ?? createMemoryLimiter();
  const now = options.now ?? Date.now;
  const sleep =
    options.sleep ?? ((ms: number) => new Promise<void>((done) => setTimeout(done, ms)));
  const instanceId = options.instanceId ?? 'default';
  const defaultMaxTokens = options.defaultMaxTokens ?? 1024;
  const keyCacheMs = options.keyCacheMs ?? 10_000;
  const failuresBeforeDelay = options.authFailuresBeforeDelay ?? 10;
  const onError = options.onError ?? (() => {});
  const payerLimits = options.payerLimits ?? {};
  const recorder: Recorder = createRecorder({
    store,
    instanceId,
    journalDir: options.journalDir,
    onHealthChange: options.onHealthChange,
  });

  const staticKeys = new Map<string, Caller>();
  for (const key of options.staticKeys ?? []) {
    const digest = Buffer.from(hashSecret(key)).toString('hex');
    staticKeys.set(digest, {
      kind: 'static-key',
      tenantId: `static:${digest.slice(0, 8)}`,
      tenantName: null,
      keyId: null,
      limits: {},
    });
  }

  // ---- key lookups, cached ------------------------------------------------------------------

  interface CachedKey {
    key: ApiKeyRecord | undefined;
    tenant: Tenant | undefined;
    fetchedAt: number;
  }
  const keyCache = new Map<string, CachedKey | Promise<CachedKey>>();

  const lookupKey = async (id: string): Promise<CachedKey> => {
    const cached = keyCache.get(id);
    if (cached && !(cached instanceof Promise) && now() - cached.fetchedAt < keyCacheMs)
      return cached;
    if (cached instanceof Promise) return cached;
    const loading = (async () => {
      const key = await store.getKey(id);
      const tenant = key ? await store.getTenant(key.tenantId) : undefined;
      return { key, tenant, fetchedAt: now() };
    })();
    keyCache.set(id, loading);
    try {
      const entry = await loading;
      if (keyCache.size > 50_000) keyCache.clear();
      keyCache.set(id, entry);
      return entry;
    } catch (error) {
      keyCache.delete(id);
      throw error;
    }
  };

  const forgetTenantKeys = (tenantId: string) => {
    for (const [id, entry] of keyCache) {
      if (entry instanceof Promise || entry.key?.tenantId === tenantId) keyCache.delete(id);
    }
  };

  // ---- the limiter's health, and slots it could not release ---------------------------------

  type Reservation = Extract<Awaited<ReturnType<Limiter['admit']>>, { ok: true }>['reservation'];
  let limiterHealthy = true;
  const limiterAnswered = (healthy: boolean, error?: unknown) => {
    if (healthy === limiterHealthy) return;
    limiterHealthy = healthy;
    options.onLimiterHealthChange?.(healthy, error);
  };
  // A request that ends while the limiter is unreachable still holds its concurrency slot
  // there: without a retry the tenant's slot stays taken until its lease ends, minutes after
  // the limiter is back. A retry only gives the slot back (it settles at the reserved figures,
  // so no counter moves): the first attempt may still reach Redis late, from its client's
  // queue, and counters adjusted twice would be wrong. Counters left at the reservation
  // over-count, on the safe side, until their window ends.
  const unreleased: Array<{ reservation: Reservation; since: number }> = [];
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let retrying: Promise<void> | undefined;

  const releaseSlots = async (): Promise<void> => {
    while (unreleased.length > 0) {
      const { reservation, since } = unreleased[0]!;
      if (now() - since <= RELEASE_GIVE_UP_MS) {
        try {
          await limiter.settle(reservation, {
            tokens: reservation.tokens,
            costMicroUsd: reservation.costMicroUsd,
            now: now(),
          });
        } catch (error) {
          limiterAnswered(false, error);
          scheduleRetry();
          return;
        }
        limiterAnswered(true);
      }
      unreleased.shift();
    }
  };
  let limiterCheck: Promise<boolean> | undefined;
  const checkLimiter = (): Promise<boolean> => {
    const ping = limiter.ping?.bind(limiter);
    if (!ping) return Promise.resolve(limiterHealthy);
    limiterCheck ??= (async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          ping(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`the limiter did not answer within ${LIMITER_CHECK_MS} ms`)),
              LIMITER_CHECK_MS,
            );
          }),
        ]);
        limiterAnswered(true);
        // Slots left held while it was away can go back now, without waiting for a request.
        if (unreleased.length > 0) void retryReleases();
      } catch (error) {
        limiterAnswered(false, error);
      } finally {
        clearTimeout(timer);
        limiterCheck = undefined;
      }
      return limiterHealthy;
    })();
    return limiterCheck;
  };
  /** Releases the slots left held, one run at a time. */
  const retryReleases = (): Promise<void> => {
    retrying ??= releaseSlots().finally(() => {
      retrying = undefined;
    });
    return retrying;
  };
  const scheduleRetry = () => {
    if (retryTimer) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void retryReleases();
    }, RELEASE_RETRY_MS);
    retryTimer.unref?.();
  };
  // Slots held by requests still running, renewed on a timer where slots expire.
  const holding = new Set<Reservation>();
  const renewTimer = limiter.renew
    ? setInterval(() => {
        if (holding.size === 0) return;
        limiter.renew!([...holding], now()).then(
          () => limiterAnswered(true),
          (error: unknown) => limiterAnswered(false, error),
        );
      }, options.slotRenewMs ?? SLOT_RENEW_MS)
    : undefined;
  renewTimer?.unref();

  /** Settles a reservation in the limiter; never rejects. */
  const release = async (
    reservation: Reservation,
    actual: Parameters<Limiter['settle']>[1],
  ): Promise<void> => {
    holding.delete(reservation);
    try {
      await limiter.settle(reservation, actual);
      limiterAnswered(true);
    } catch (error) {
      limiterAnswered(false, error);
      if (!reservation.slot) return;
      if (unreleased.length >= MAX_UNRELEASED) unreleased.shift();
      unreleased.push({ reservation, since: now() });
      scheduleRetry();
    }
  };

  // ---- failed authentications -----------------------------------------------------------------

  interface Failures {
    count: number;
    since: number;
  }
  const failures = new Map<string, Failures>();

  const auditFailures = (address: string, entry: Failures) => {
    recorder.audit({
      id: createId('au'),
      at: new Date(entry.since),
      actor: 'system',
      action: 'auth.failures',
      target: null,
      result: 'denied',
      httpStatus: 401,
      method: null,
      path: null,
      remoteAddress: address,
      requestId: null,
      detail: { count: entry.count, windowSeconds: AUTH_WINDOW_MS / 1000 },
    });
  };

  const sweepFailures = (force = false) => {
    const time = now();
    for (const [address, entry] of failures) {
      if (force || time - entry.since >= AUTH_WINDOW_MS) {
        failures.delete(address);
        auditFailures(address, entry);
      }
    }
  };
  const sweepTimer = setInterval(() => sweepFailures(), AUTH_WINDOW_MS);
  sweepTimer.unref();

  const refuse = async (context: RequestContext | undefined, error: TollgateError) => {
    const address = context?.remoteAddress ?? 'unknown';
    const time = now();
    let entry = failures.get(address);
    if (entry && time - entry.since >= AUTH_WINDOW_MS) {
      failures.delete(address);
      auditFailures(address, entry);
      entry = undefined;
    }
    if (!entry) {
      entry = { count: 0, since: time };
      failures.set(address, entry);
    }
    entry.count++;
    const over = entry.count - failuresBeforeDelay;
    if (over > 0) await sleep(Math.min(MAX_AUTH_DELAY_MS, 50 * 2 ** Math.min(over, 10)));
    throw error;
  };

  const invalidKey = () =>
    new TollgateError(
      'invalid_api_key',
      'The API key is not valid. Check it for typos; keys are case-sensitive.',
    );

  // ---- admin helpers ----------------------------------------------------------------------------

  const audit = (
    actor: ActorContext,
    action: string,
    target: string | null,
    detail: Record<string, unknown> | null = null,
  ): Promise<void> =>
    store.writeRecords({
      reservations: [],
      usage: [],
      payments: [],
      audit: [
        {
          id: createId('au'),
          at: new Date(now()),
          actor: actor.actor,
          action,
          target,
          result: 'ok',
          httpStatus: null,
          method: actor.method ?? null,
          path: actor.path ?? null,
          remoteAddress: actor.remoteAddress ?? null,
          requestId: actor.requestId ?? null,
          detail,
        },
      ],
    });

  const findTenant = async (idOrName: string): Promise<Tenant> => {
    const tenant = idOrName.startsWith('tn_')
      ? await store.getTenant(idOrName)
      : await store.getTenantByName(idOrName);
    if (!tenant) {
      throw new TollgateError('not_found', `There is no tenant "${idOrName}".`, {
        param: 'tenant',
      });
    }
    return tenant;
  };

  const findKey = async (id: string): Promise<ApiKeyRecord> => {
    const key = await store.getKey(id);
    if (!key) throw new TollgateError('not_found', `There is no key "${id}".`, { param: 'key' });
    return key;
  };

  const issue = async (
    tenant: Tenant,
    name: string,
    expiresAt: Date | null,
  ): Promise<IssuedKey> => {
    const generated = generateKey();
    const record: ApiKeyRecord = {
      id: generated.id,
      tenantId: tenant.id,
      name,
      secretHash: generated.secretHash,
      createdAt: new Date(now()),
      expiresAt,
      revokedAt: null,
      replacedBy: null,
    };
    await store.insertKey(record);
    return { ...toKeyView(record, now()), key: generated.key };
  };

  const checkKeyName = (name: unknown): string => {
    if (name === undefined) return 'default';
    if (typeof name !== 'string' || !KEY_NAME.test(name)) {
      throw invalid('A key name is 1-64 letters, digits, spaces or "._:@/-".', 'name');
    }
    return name;
  };

  return {
    async authenticate(presented, context) {
      if (presented === undefined || presented === '') {
        throw new TollgateError(
          'missing_api_key',
          'This gateway needs an API key. Send it as "Authorization: Bearer <key>" (what the OpenAI SDKs do with apiKey) or in an "x-api-key" header.',
        );
      }
      if (staticKeys.size > 0) {
        const caller = staticKeys.get(Buffer.from(hashSecret(presented)).toString('hex'));
        if (caller) return caller;
      }
      const parsed = parseKey(presented);
      if (!parsed) return refuse(context, invalidKey());
      let entry: CachedKey;
      try {
        entry = await lookupKey(parsed.id);
      } catch (error) {
        throw storeDown(error);
      }
      const { key, tenant } = entry;
      if (!key || !tenant || !secretMatches(parsed.secret, key.secretHash)) {
        return refuse(context, invalidKey());
      }
      // The holder of the secret may learn why it no longer works.
      if (key.revokedAt) {
        return refuse(
          context,
          new TollgateError(
            'invalid_api_key',
            `This API key (${key.id}) was revoked. Ask for a new one.`,
          ),
        );
      }
      if (key.expiresAt && key.expiresAt.getTime() <= now()) {
        return refuse(
          context,
          new TollgateError(
            'invalid_api_key',
            `This API key (${key.id}) expired at ${key.expiresAt.toISOString()}.${key.replacedBy ? ' It was rotated: use its replacement.' : ''}`,
          ),
        );
      }
      return {
        kind: 'tenant',
        tenantId: tenant.id,
        tenantName: tenant.name,
        keyId: key.id,
        limits: tenant.limits,
      };
    },

    async admit(caller, request) {
      const { model } = request;
      if (!modelAllowed(caller.limits.models, model)) {
        throw new TollgateError(
          'model_not_allowed',
          `This ${caller.kind === 'payer' ? 'payer' : 'key'} may not use the model "${model}". Allowed: ${caller.limits.models!.join(', ') || 'none'}.`,
          { param: 'model' },
        );
      }
      if (!recorder.healthy) {
        throw new TollgateError(
          'service_unavailable',
          'Usage cannot be recorded right now (the database is unreachable), so no metered request is served. Try again shortly.',
          { headers: { 'retry-after': '5' } },
        );
      }
      const admissionId = createId('ad');
      const promptTokens = estimatePromptTokens(request.body);
      let allowance = completionAllowance(request.body, request.operation, defaultMaxTokens);
      if (request.contextLength !== undefined) {
        allowance = Math.min(allowance, Math.max(0, request.contextLength - promptTokens));
      }
      const price = priceFor(options.prices, model);
      const reservedCost = costMicroUsd(price, promptTokens, allowance);
      const admittedAt = now();
      const streamed = request.streamed ?? false;

      let reservation: Reservation | undefined;
      let headers: Record<string, string> = {};
      const limits = caller.limits;
      const limited =
        limits.requestsPerMinute !== undefined ||
        limits.tokensPerMinute !== undefined ||
        limits.maxConcurrent !== undefined ||
        (limits.budgets !== undefined && limits.budgets.length > 0);
      let result: Awaited<ReturnType<Limiter['admit']>> | undefined;
      if (limited) {
        try {
          // Slots freed while the limiter was away are given back before anything is taken;
          // while it still refuses them, it is still away.
          if (unreleased.length > 0) {
            await retryReleases();
            if (unreleased.length > 0) throw new Error('the limiter is unreachable');
          }
          result = await limiter.admit({
            tenantId: caller.tenantId,
            limits: toLimiterLimits(limits),
            admissionId,
            tokens: promptTokens + allowance,
            costMicroUsd: reservedCost,
            now: admittedAt,
            usedInPeriod: async (_period, periodStart) => {
              const used = await store.usageSince(caller.tenantId, periodStart);
              return { tokens: used.totalTokens, costMicroUsd: used.costMicroUsd };
            },
          });
        } catch (error) {
          limiterAnswered(false, error);
          if (options.limiterUnreachable !== 'serve') {
            throw new TollgateError(
              'service_unavailable',
              'Rate limits cannot be checked right now (their state is unreachable); try again shortly.',
              { cause: error, headers: { 'retry-after': '5' } },
            );
          }
          // Fail open: served like an unlimited caller, no reservation held in the limiter.
        }
      }
      if (result) {
        limiterAnswered(true);
        if (!result.ok) {
          const retryAfterMs = Math.max(1, Math.ceil(result.retryAfterMs));
          throw new TollgateError(
            REASON_CODES[result.reason],
            refusalMessage(
              result.reason,
              result.limit,
              retryAfterMs,
              caller.tenantName ?? caller.tenantId,
            ),
            {
              headers: {
                ...rateHeaders(result.state),
                'retry-after': String(Math.ceil(retryAfterMs / 1000)),
                'retry-after-ms': String(retryAfterMs),
              },
            },
          );
        }
        reservation = result.reservation;
        if (reservation.slot) holding.add(reservation);
        headers = rateHeaders(result.state);
      }

      try {
        recorder.reserve({
          id: admissionId,
          instanceId,
          at: new Date(admittedAt),
          tenantId: caller.tenantId,
          keyId: caller.keyId,
          model,
          promptTokens,
          completionTokens: allowance,
          costMicroUsd: reservedCost,
          requestId: request.requestId ?? null,
          streamed,
        });
      } catch (error) {
        if (reservation) await release(reservation, { tokens: 0, costMicroUsd: 0, now: now() });
        throw new TollgateError(
          'service_unavailable',
          'Usage cannot be recorded right now (the gateway is shutting down); try again shortly.',
          { cause: error },
        );
      }

      let settled = false;
      return {
        id: admissionId,
        headers,
        async settle(report) {
          if (settled) return;
          settled = true;
          const usage = report.usage;
          const reported =
            usage !== undefined &&
            (typeof usage.prompt_tokens === 'number' ||
              typeof usage.completion_tokens === 'number');
          let prompt: number;
          let completion: number;
          if (reported) {
            prompt = usage.prompt_tokens ?? 0;
            completion =
              usage.completion_tokens ?? Math.max(0, (usage.total_tokens ?? prompt) - prompt);
          } else if (report.status === 'completed') {
            // Served, but the server counts nothing: bill what was reserved, marked estimated.
            prompt = promptTokens;
            completion = allowance;
          } else if (report.status === 'aborted' && report.firstTokenMs != null) {
            prompt = promptTokens;
            completion = allowance;
          } else {
            // The upstream failed, or the caller left before any answer: nothing was delivered.
            prompt = 0;
            completion = 0;
          }
          const cost = costMicroUsd(price, prompt, completion);
          const settledAt = now();
          if (reservation) {
            await release(reservation, {
              tokens: prompt + completion,
              costMicroUsd: cost,
              now: settledAt,
            });
          }
          const event: UsageEvent = {
            id: admissionId,
            at: new Date(admittedAt),
            tenantId: caller.tenantId,
            keyId: caller.keyId,
            model,
            backend: report.backend ?? null,
            promptTokens: prompt,
            completionTokens: completion,
            totalTokens: prompt + completion,
            estimated: !reported,
            costMicroUsd: cost,
            status: report.status,
            httpStatus: report.httpStatus,
            latencyMs: Math.max(0, Math.round(settledAt - admittedAt)),
            firstTokenMs: report.firstTokenMs == null ? null : Math.round(report.firstTokenMs),
            requestId: request.requestId ?? null,
            streamed: report.streamed ?? streamed,
            paymentId: report.paymentId ?? null,
          };
          try {
            recorder.usage(event);
          } catch (error) {
            onError('journaling a usage event failed (it is still queued)', error);
          }
        },
      };
    },

    async createTenant(input, actor) {
      const name = checkTenantName(input.name);
      const limits = applyLimitsInput({}, parseLimits(input.limits ?? {}));
      const at = new Date(now());
      const tenant = await store.createTenant({
        id: createId('tn'),
        name,
        limits,
        createdAt: at,
        updatedAt: at,
      });
      await audit(actor, 'tenant.create', tenant.id, { name });
      return tenant;
    },

    listTenants: () => store.listTenants(),

    getTenant: findTenant,

    async updateTenant(idOrName, input, actor) {
      const tenant = await findTenant(idOrName);
      const name = input.name === undefined ? undefined : checkTenantName(input.name);
      const limitsInput = input.limits === undefined ? undefined : parseLimits(input.limits);
      const limits = limitsInput ? applyLimitsInput(tenant.limits, limitsInput) : undefined;
      const updated = await store.updateTenant(tenant.id, {
        ...(name !== undefined ? { name } : {}),
        ...(limits !== undefined ? { limits } : {}),
        updatedAt: new Date(now()),
      });
      if (!updated) throw new TollgateError('not_found', `There is no tenant "${idOrName}".`);
      forgetTenantKeys(tenant.id);
      await audit(actor, 'tenant.update', tenant.id, {
        ...(name !== undefined ? { name } : {}),
        ...(limitsInput ? { limits: Object.keys(limitsInput) } : {}),
      });
      return updated;
    },

    async deleteTenant(idOrName, actor) {
      const tenant = await findTenant(idOrName);
      await store.deleteTenant(tenant.id);
      forgetTenantKeys(tenant.id);
      await audit(actor, 'tenant.delete', tenant.id, { name: tenant.name });
    },

    async issueKey(tenantIdOrName, input, actor) {
      const tenant = await findTenant(tenantIdOrName);
      const name = checkKeyName(input.name);
      const expiresAt = input.expiresAt ?? null;
      if (expiresAt && (Number.isNaN(expiresAt.getTime()) || expiresAt.getTime() <= now())) {
        throw invalid('expires_at must be a time in the future.', 'expires_at');
      }
      const issued = await issue(tenant, name, expiresAt);
      await audit(actor, 'key.issue', issued.id, { tenant: tenant.id, name });
      return issued;
    },

    async listKeys(tenantIdOrName) {
      const tenant = await findTenant(tenantIdOrName);
      const time = now();
      return (await store.listKeys(tenant.id)).map((key) => toKeyView(key, time));
    },

    async rotateKey(keyId, input, actor) {
      const graceSeconds = input.graceSeconds;
      if (!Number.isInteger(graceSeconds) || graceSeconds < 0 || graceSeconds > 30 * 86_400) {
        throw invalid(
          'grace_seconds must be a whole number of seconds from 0 to 2592000 (30 days).',
          'grace_seconds',
        );
      }
      const old = await findKey(keyId);
      const time = now();
      const state = keyState(old, time);
      if (state === 'revoked' || state === 'expired' || state === 'rotating') {
        throw new TollgateError(
          'conflict',
          `The key "${keyId}" is ${state === 'rotating' ? 'already rotated' : state}; only an active key can be rotated.`,
        );
      }
      const tenant = await findTenant(old.tenantId);
      const issued = await issue(tenant, old.name, old.expiresAt);
      const graceEnd = new Date(time + graceSeconds * 1000);
      const expiresAt = old.expiresAt && old.expiresAt < graceEnd ? old.expiresAt : graceEnd;
      const previous = await store.updateKey(old.id, { expiresAt, replacedBy: issued.id });
      keyCache.delete(old.id);
      await audit(actor, 'key.rotate', old.id, { replacedBy: issued.id, graceSeconds });
      return { key: issued, previous: toKeyView(previous ?? old, now()) };
    },

    async revokeKey(keyId, actor) {
      const key = await findKey(keyId);
      const revoked = key.revokedAt
        ? key
        : ((await store.updateKey(key.id, { revokedAt: new Date(now()) })) ?? key);
      keyCache.delete(key.id);
      if (!key.revokedAt) await audit(actor, 'key.revoke', key.id, { tenant: key.tenantId });
      return toKeyView(revoked, now());
    },

    payer: (address) => payerCaller(address, payerLimits),

    recordPayment(payment) {
      const record = toPaymentRecord(payment, now());
      recorder.payment(record);
      return record;
    },

    usage: (query) => store.queryUsage(query),
    audit: (query) => store.queryAudit(query),
    listPayments: (query) => store.queryPayments(query),

    recordAudit(entry) {
      recorder.audit({
        target: null,
        detail: null,
        ...entry,
        id: entry.id ?? createId('au'),
        at: entry.at ?? new Date(now()),
      });
    },

    async start() {
      const { replayed, interrupted, open } = await recorder.recover();
      // A process killed outright held its requests' concurrency slots; in a shared limiter
      // (Redis) they would stay taken until their lease ends, minutes from now. They are given
      // back at the reserved figures, so no counter moves. An in-memory limiter died with it.
      if (limiter.kind !== 'memory') {
        await Promise.all(
          open.map((reservation) => {
            const tokens = reservation.promptTokens + reservation.completionTokens;
            return release(
              {
                tenantId: reservation.tenantId,
                admissionId: reservation.id,
                tokens,
                costMicroUsd: reservation.costMicroUsd,
                minuteStart: minuteStartOf(reservation.at.getTime()),
                periods: [],
                slot: true,
              },
              { tokens, costMicroUsd: reservation.costMicroUsd, now: now() },
            );
          }),
        );
      }
      return { replayed, interrupted };
    },
    get healthy() {
      return recorder.healthy;
    },
    get limiterHealthy() {
      return limiterHealthy;
    },
    checkLimiter,
    flush: () => recorder.flush(),
    async close() {
      clearInterval(sweepTimer);
      clearInterval(renewTimer);
      clearTimeout(retryTimer);
      sweepFailures(true);
      // One last try; what the limiter still refuses is freed by its slot leases.
      if (unreleased.length > 0) await retryReleases();
      clearTimeout(retryTimer);
      try {
        await recorder.close();
      } finally {
        await limiter.close();
      }
    },
  };
}
