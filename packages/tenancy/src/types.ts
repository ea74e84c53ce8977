/**
 * The records and the two storage contracts of @tollgate/tenancy: the durable store
 * (tenants, keys, usage, payments, audit, open reservations) and the limiter (counters,
 * reservations and concurrency slots that must be updated atomically, in memory or in Redis).
 */

/** A budget over a calendar period (UTC). Each cap is optional; absent means no cap. */
export interface Budget {
  /** `day` resets at 00:00 UTC, `month` on the 1st at 00:00 UTC. */
  period: 'day' | 'month';
  /** Total tokens (prompt + completion) allowed in the period. */
  tokens?: number;
  /** Spend allowed in the period, in US dollars, from the configured per-model prices. */
  spendUsd?: number;
}

/** A tenant's limits. Every field is optional; absent means unlimited. */
export interface TenantLimits {
  requestsPerMinute?: number;
  tokensPerMinute?: number;
  /** Requests of this tenant in flight at once. */
  maxConcurrent?: number;
  /** Models the tenant may call: exact names or globs with `*` (e.g. `llama3*`). */
  models?: string[];
  /** At most one budget per period. */
  budgets?: Budget[];
}

/** Somebody who calls the gateway with keys, limits and a usage history. */
export interface Tenant {
  /** `tn_` followed by 16 lowercase base32 characters. */
  id: string;
  /** Unique, 1-64 characters of `[A-Za-z0-9._-]`, used by the CLI (`tollgate keys issue acme`). */
  name: string;
  limits: TenantLimits;
  createdAt: Date;
  updatedAt: Date;
}

/** An issued API key as stored: never the secret, only its SHA-256. */
export interface ApiKeyRecord {
  /** The public id: the `<public id>` of `tg_<public id>_<secret>`; 16 lowercase base32 characters. */
  id: string;
  tenantId: string;
  /** A label for humans, e.g. `ci`. */
  name: string;
  /** SHA-256 of the secret part, 32 bytes. */
  secretHash: Uint8Array;
  createdAt: Date;
  /** After this instant the key is refused. Rotation sets it to the end of the grace period. */
  expiresAt: Date | null;
  revokedAt: Date | null;
  /** Set on a key that was rotated: the id of the key that replaced it. */
  replacedBy: string | null;
}

/** How an admitted request ended, as recorded. */
export type UsageStatus =
  /** Answered (any status the upstream chose, 4xx included). */
  | 'completed'
  /** The upstream failed (unreachable, 5xx, broke mid-stream, timed out). */
  | 'failed'
  /** The caller went away. */
  | 'aborted'
  /** Found open at restart: the process died while it ran; recorded at its reservation. */
  | 'interrupted';

/** One admitted request, as metered. */
export interface UsageEvent {
  /** The admission's id (`ad_...`), shared with its reservation, so replays are idempotent. */
  id: string;
  /** When the request was admitted. */
  at: Date;
  tenantId: string;
  /** Public id of the key used, or null for static keys and payments. */
  keyId: string | null;
  /** The model as the caller named it. */
  model: string;
  backend: string | null;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** True when the upstream reported no usage and the counts are estimates. */
  estimated: boolean;
  /** Cost in millionths of a US dollar, from the configured prices (0 when unpriced). */
  costMicroUsd: number;
  status: UsageStatus;
  /** The HTTP status the caller got (499 when the caller left first; 0 when `interrupted`). */
  httpStatus: number;
  latencyMs: number;
  /** Time to the first byte of the answer, when there was one. */
  firstTokenMs: number | null;
  requestId: string | null;
  streamed: boolean;
  /** The x402 payment that paid for it, when one did. */
  paymentId: string | null;
}

/** Who did something recorded in the audit log. */
export type AuditActor = `admin` | `key:${string}` | `tenant:${string}` | 'system' | 'cli';

/** One audit log entry. Never holds secrets or request bodies. */
export interface AuditEntry {
  /** `au_` followed by 16 lowercase base32 characters. */
  id: string;
  at: Date;
  actor: string;
  /** e.g. `tenant.create`, `key.issue`, `key.rotate`, `key.revoke`, `auth.failures`. */
  action: string;
  /** What the action was on, e.g. a tenant or key id. */
  target: string | null;
  result: 'ok' | 'denied' | 'error';
  httpStatus: number | null;
  method: string | null;
  path: string | null;
  remoteAddress: string | null;
  requestId: string | null;
  /** Extra facts (JSON), e.g. the changed limit names or a failure count. */
  detail: Record<string, unknown> | null;
}

/**
 * An admission not yet settled. Written (batched) when admitted and deleted when its usage
 * event is written, so a gateway that died with requests in flight finds them at restart.
 */
export interface ReservationRecord {
  /** The admission id; its usage event will carry the same id. */
  id: string;
  /** Which gateway process holds it (a stable id kept in the data dir). */
  instanceId: string;
  at: Date;
  tenantId: string;
  keyId: string | null;
  model: string;
  /** Reserved tokens: the prompt estimate plus max_tokens. */
  promptTokens: number;
  completionTokens: number;
  costMicroUsd: number;
  requestId: string | null;
  streamed: boolean;
}

/**
 * What became of an x402 payment: `settled` (the facilitator moved the money, `transaction`
 * names the transfer), `verified` (verify-only mode: the payment was checked, no money moved),
 * `failed` (verification or settlement refused, `error` says why).
 */
export type PaymentStatus = 'settled' | 'verified' | 'failed';

/** One x402 payment, as billed: what was paid, by whom, to whom, and how it ended. */
export interface PaymentRecord {
  /** `py_` followed by 16 lowercase base32 characters; usage events name it as `paymentId`. */
  id: string;
  /** When the payment was verified or settled (or failed). */
  at: Date;
  /** The gateway's id of the request the payment came with. */
  requestId: string;
  /** The admission (`ad_...`) the payment bought, i.e. the id of its usage event, if admitted. */
  usageId: string | null;
  /** The paying address, `0x` and 40 lowercase hex digits. */
  payer: string;
  /** CAIP-2 chain id, e.g. `eip155:84532` (Base Sepolia). */
  network: string;
  /** The token contract paid in (e.g. USDC's address on that network). */
  asset: string;
  /** The address paid. */
  payTo: string;
  /**
   * The amount in the asset's atomic units, as a string of decimal digits (USDC has 6
   * decimals: `'1000'` is $0.001). Never a JS number, which cannot hold every amount exactly.
   */
  amount: string;
  /** The x402 scheme, e.g. `exact`. */
  scheme: string;
  /** The x402 protocol version of the payment header (1 or 2). */
  x402Version: number;
  /** The authorization's nonce, `0x` hex: at most one payment per nonce can settle. */
  nonce: string;
  status: PaymentStatus;
  /** The settlement's transaction hash, when one was made. */
  transaction: string | null;
  /** The facilitator's reason, when the payment failed. */
  error: string | null;
}

/** One batch of records, written in one transaction. Every part may be empty. */
export interface RecordBatch {
  reservations: ReservationRecord[];
  usage: UsageEvent[];
  audit: AuditEntry[];
  payments: PaymentRecord[];
}

/** Filters for {@link TenancyStore.queryUsage}. */
export interface UsageQuery {
  tenantId?: string;
  model?: string;
  /** Inclusive lower bound on `at`. */
  since?: Date;
  /** Exclusive upper bound on `at`. */
  until?: Date;
  /** Group rows by these, in this order; none gives one row of totals. */
  groupBy?: Array<'tenant' | 'model' | 'day'>;
}

/** One row of {@link TenancyStore.queryUsage}; grouping keys are present only when grouped by. */
export interface UsageRow {
  tenantId?: string;
  model?: string;
  /** `YYYY-MM-DD` (UTC). */
  day?: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  costMicroUsd: number;
  estimatedRequests: number;
}

/** Filters for {@link TenancyStore.queryAudit}. Newest first. */
export interface AuditQuery {
  actor?: string;
  action?: string;
  target?: string;
  since?: Date;
  until?: Date;
  /** @default 100 */
  limit?: number;
}

/** Filters for {@link TenancyStore.queryPayments}. Newest first. */
export interface PaymentQuery {
  /** The paying address (compared in lowercase). */
  payer?: string;
  status?: PaymentStatus;
  /** Inclusive lower bound on `at`. */
  since?: Date;
  /** Exclusive upper bound on `at`. */
  until?: Date;
  /** At most 1000. @default 100 */
  limit?: number;
}

/**
 * The durable store: PGlite or PostgreSQL behind drizzle-orm, same schema, same migrations.
 * Methods throw a {@link TollgateError} `conflict` for a duplicate tenant name and reject with
 * the driver's error when the database cannot be reached.
 */
export interface TenancyStore {
  readonly kind: 'pglite' | 'postgres';

  createTenant(tenant: Tenant): Promise<Tenant>;
  getTenant(id: string): Promise<Tenant | undefined>;
  getTenantByName(name: string): Promise<Tenant | undefined>;
  /** Ordered by creation time. */
  listTenants(): Promise<Tenant[]>;
  /** Replaces the given fields; returns undefined for an unknown id. */
  updateTenant(
    id: string,
    patch: { name?: string; limits?: TenantLimits; updatedAt: Date },
  ): Promise<Tenant | undefined>;
  /** Deletes the tenant and its keys (usage and audit stay). False for an unknown id. */
  deleteTenant(id: string): Promise<boolean>;

  insertKey(key: ApiKeyRecord): Promise<void>;
  getKey(id: string): Promise<ApiKeyRecord | undefined>;
  /** Ordered by creation time. */
  listKeys(tenantId: string): Promise<ApiKeyRecord[]>;
  updateKey(
    id: string,
    patch: { expiresAt?: Date | null; revokedAt?: Date | null; replacedBy?: string | null },
  ): Promise<ApiKeyRecord | undefined>;

  /**
   * Writes a batch in one transaction. Idempotent: records already written (same id) are
   * skipped, so a batch can be replayed after a crash. A usage event deletes the reservation
   * with its id.
   */
  writeRecords(batch: RecordBatch): Promise<void>;
  /** Reservations left open by a gateway instance (to settle them at its restart). */
  openReservations(instanceId: string): Promise<ReservationRecord[]>;
  /** Sums of a tenant's usage since an instant (seeds budget counters). */
  usageSince(tenantId: string, since: Date): Promise<{ totalTokens: number; costMicroUsd: number }>;
  queryUsage(query: UsageQuery): Promise<UsageRow[]>;
  queryAudit(query: AuditQuery): Promise<AuditEntry[]>;
  /**
   * Payments, newest first.
   * @throws {RangeError} When `limit` is not a positive integer.
   */
  queryPayments(query: PaymentQuery): Promise<PaymentRecord[]>;

  /** Resolves when the database answers a trivial query. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The limits the limiter enforces, with spend in micro-dollars. */
export interface LimiterLimits {
  requestsPerMinute?: number;
  tokensPerMinute?: number;
  maxConcurrent?: number;
  budgets?: Array<{ period: 'day' | 'month'; tokens?: number; spendMicroUsd?: number }>;
}

/** One admission request to the limiter. */
export interface LimiterRequest {
  tenantId: string;
  limits: LimiterLimits;
  /** Unique per admission (the admission id); names the concurrency slot. */
  admissionId: string;
  /** Tokens to reserve: the prompt estimate plus max_tokens. */
  tokens: number;
  /** Spend to reserve, in micro-dollars. */
  costMicroUsd: number;
  /** The current time in ms since the epoch (the caller's clock, injectable in tests). */
  now: number;
  /**
   * What the tenant already used in a budget period, from the store. Called only when the
   * limiter holds no counter for that tenant and period (first use since start, or Redis lost
   * it), so budgets survive restarts.
   */
  usedInPeriod?: (
    period: 'day' | 'month',
    periodStart: Date,
  ) => Promise<{ tokens: number; costMicroUsd: number }>;
}

/** Where a tenant stands in one rate dimension, for the `x-ratelimit-*` headers. */
export interface RateWindow {
  limit: number;
  remaining: number;
  /** Milliseconds until the window resets. */
  resetMs: number;
}

/** What the limiter knows after an admission attempt (headers are built from it). */
export interface RateState {
  requests?: RateWindow;
  tokens?: RateWindow;
}

/** Which limit refused a request. */
export type LimitReason =
  | 'requests_per_minute'
  | 'tokens_per_minute'
  | 'concurrency'
  | 'budget_tokens'
  | 'budget_spend';

/** An accepted admission, to hand back to {@link Limiter.settle}. */
export interface LimiterReservation {
  tenantId: string;
  admissionId: string;
  tokens: number;
  costMicroUsd: number;
  /** Start (ms) of the minute window the tokens were counted in. */
  minuteStart: number;
  /** Starts (ms) of the budget periods the reservation was counted in. */
  periods: Array<{ period: 'day' | 'month'; start: number }>;
  /** Whether a concurrency slot was taken. */
  slot: boolean;
}

export type LimiterResult =
  | { ok: true; reservation: LimiterReservation; state: RateState }
  | {
      ok: false;
      reason: LimitReason;
      /** When trying again could succeed, in ms from now. */
      retryAfterMs: number;
      /** The limit that was hit (e.g. 60 requests per minute). */
      limit: number;
      state: RateState;
    };

/**
 * Counters, reservations and concurrency slots, updated atomically: in memory for one
 * gateway, in Redis (Lua scripts) for several.
 *
 * - Windows: requests and tokens per minute in fixed one-minute windows (UTC minute
 *   boundaries); budgets per UTC day or month.
 * - `admit` checks every limit and, only if all pass, counts the request, reserves the tokens
 *   and spend in the minute window and each budget period, and takes a slot. A refusal
 *   changes nothing.
 * - `settle` replaces the reservation with the real figures: in a window or period that is
 *   still current, the difference is applied, but a refund never exceeds what was reserved
 *   there (counters never go negative); in one that has ended, only an excess is added, to
 *   the current one. It releases the slot. The caller settles each reservation once.
 * - Concurrency slots in Redis are leases (a gateway that dies cannot hold them forever).
 */
export interface Limiter {
  readonly kind: 'memory' | 'redis';
  admit(request: LimiterRequest): Promise<LimiterResult>;
  settle(
    reservation: LimiterReservation,
    actual: { tokens: number; costMicroUsd: number; now: number },
  ): Promise<void>;
  /** Concurrency slots held by a tenant right now (for tests and /admin views). */
  inFlight(tenantId: string, now: number): Promise<number>;
  /** Rejects when the limiter's state does not answer (Redis: a PING). Optional. */
  ping?(): Promise<void>;
  /**
   * Extends the leases of the concurrency slots these reservations still hold, for a limiter
   * whose slots expire (Redis). Released or expired slots are not taken again. Optional.
   */
  renew?(reservations: LimiterReservation[], now: number): Promise<void>;
  close(): Promise<void>;
}
