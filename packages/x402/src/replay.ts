/**
 * The replay lock: one authorization buys one request. The gate takes the lock before any
 * work and keeps it until the authorization expires (in verify-only mode no money moves,
 * so this lock is all that stops a replay); it gives it back only when the request was not
 * served and nothing was charged.
 */
import type { Authorization } from './types.js';

/** Gives a lock back; a lock taken again by someone else after it expired stays theirs. */
export type ReleaseLock = () => Promise<void>;

/** Where held authorizations are remembered. */
export interface ReplayLock {
  /** Takes the lock for `ttlMs`: its release, or undefined when someone holds it already. */
  acquire(key: string, ttlMs: number): Promise<ReleaseLock | undefined>;
}

/**
 * The lock key of an authorization: EIP-3009 nonces are unique per (token, signer), so
 * network, asset, from and nonce name one authorization.
 */
export function authorizationKey(
  network: string,
  asset: string,
  authorization: Pick<Authorization, 'from' | 'nonce'>,
): string {
  return `${network}:${asset.toLowerCase()}:${authorization.from.toLowerCase()}:${authorization.nonce.toLowerCase()}`;
}

/**
 * A lock in this process's memory: right for one gateway; several gateways need
 * {@link createRedisReplayLock}.
 *
 * @param options.now - clock in ms. @default Date.now
 */
export function createMemoryReplayLock(
  options: { now?: () => number } = {},
): ReplayLock & { readonly size: number } {
  const now = options.now ?? Date.now;
  // Each holder is its own object, so a stale release (after expiry, or a second call) can
  // tell the lock is no longer its own even when a new holder's expiry is the same ms.
  const held = new Map<string, { expires: number }>();
  let nextSweep = 0;
  return {
    get size() {
      return held.size;
    },
    async acquire(key, ttlMs) {
      const at = now();
      if (at >= nextSweep) {
        // Expired entries go in one pass now and then, so the map stays as big as the live locks.
        for (const [entry, holder] of held) if (holder.expires <= at) held.delete(entry);
        nextSweep = at + 10_000;
      }
      const current = held.get(key);
      if (current !== undefined && current.expires > at) return undefined;
      const holder = { expires: at + Math.max(1, ttlMs) };
      held.set(key, holder);
      return async () => {
        if (held.get(key) === holder) held.delete(key);
      };
    },
  };
}

/** The Redis commands {@link createRedisReplayLock} uses (ioredis and node-redis v4 shapes differ; this is ioredis'). */
export interface RedisLike {
  set(key: string, value: string, px: 'PX', ttlMs: number, nx: 'NX'): Promise<'OK' | null>;
  eval(script: string, keyCount: number, ...args: string[]): Promise<unknown>;
}

const RELEASE_IF_OWNER = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * A lock in Redis (`SET NX PX`), shared by every gateway using the same Redis. Commands that
 * fail reject: the gate then refuses the payment rather than risk serving a replay.
 *
 * @param redis - an ioredis client (or anything with its `set` and `eval`).
 * @param options.prefix - key prefix. @default 'tollgate:x402:'
 * @example
 * ```ts
 * const lock = createRedisReplayLock(new Redis('redis://127.0.0.1:6379'));
 * ```
 */
export function createRedisReplayLock(
  redis: RedisLike,
  options: { prefix?: string } = {},
): ReplayLock {
  const prefix = options.prefix ?? 'tollgate:x402:';
  return {
    async acquire(key, ttlMs) {
      const token = crypto.randomUUID();
      const taken = await redis.set(prefix + key, token, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX');
      if (taken !== 'OK') return undefined;
      return async () => {
        await redis.eval(RELEASE_IF_OWNER, 1, prefix + key, token);
      };
    },
  };
}
