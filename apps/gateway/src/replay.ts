/**
 * Replay protection for encapsulated requests: each HPKE `enc` is accepted once within a
 * window. In memory for one gateway; in Redis (SET NX with an expiry) when several gateways
 * share the traffic, so a request replayed to another replica is refused too.
 */
import { Redis } from 'ioredis';

/** Remembers what was seen. */
export interface ReplayGuard {
  /** Resolves true the first time `id` is seen within the window, false after that. */
  admit(id: Uint8Array, now: number): Promise<boolean>;
  close(): Promise<void>;
}

function hex(bytes: Uint8Array): string {
  let out = '';
  for (const byte of bytes) out += byte.toString(16).padStart(2, '0');
  return out;
}

/** A guard in this process's memory (pruned as it grows). */
export function createMemoryReplayGuard(windowMs: number): ReplayGuard {
  const seen = new Map<string, number>();
  return {
    async admit(id, now) {
      if (seen.size > 10_000) {
        for (const [key, expires] of seen) if (expires <= now) seen.delete(key);
      }
      const key = hex(id);
      const expires = seen.get(key);
      if (expires !== undefined && expires > now) return false;
      seen.set(key, now + windowMs);
      return true;
    },
    async close() {},
  };
}

/**
 * A guard in Redis shared by every gateway using the same server and prefix. A Redis error
 * rejects (the caller refuses the request: fail closed).
 */
export function createRedisReplayGuard(options: {
  url: string;
  windowMs: number;
  keyPrefix?: string;
}): ReplayGuard {
  const redis = new Redis(options.url, {
    lazyConnect: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 2000,
  });
  // Errors surface as rejected commands; the connection event would only repeat them.
  redis.on('error', () => {});
  const prefix = options.keyPrefix ?? 'tollgate:ohttp:enc:';
  return {
    async admit(id) {
      const answer = await redis.set(`${prefix}${hex(id)}`, '1', 'PX', options.windowMs, 'NX');
      return answer === 'OK';
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
