/**
 * A value loaded once and shared by concurrent callers (the gateway's public keys), loaded again
 * when a caller finds it stale.
 */
export interface Cached<T> {
  /** The current load; a failed load is forgotten, so the next call tries again. */
  get(): Promise<T>;
  /** Loads again unless another caller already replaced `stale`; resolves to the new value. */
  refresh(stale: Promise<T>): Promise<T>;
}

export function createCache<T>(load: () => Promise<T>, initial?: T): Cached<T> {
  let current: Promise<T> | undefined =
    initial === undefined ? undefined : Promise.resolve(initial);
  const get = (): Promise<T> => {
    if (current === undefined) {
      const loading = load();
      current = loading;
      loading.catch(() => {
        if (current === loading) current = undefined;
      });
    }
    return current;
  };
  return {
    get,
    refresh(stale) {
      if (current === stale) current = undefined;
      return get();
    },
  };
}
