/**
 * @module @tollgate/tenancy/testing
 *
 * Helpers for tests that run against a real PostgreSQL server: a fresh database per test
 * run, so suites never see each other's rows and leave nothing behind.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';

/** A database made for one test run. */
export interface TestDatabase {
  /** Its URL: the server's URL with the database name replaced. */
  url: string;
  /** Drops it, closing whatever is still connected to it. */
  drop(): Promise<void>;
}

/**
 * Creates an empty database `tollgate_test_<random>` on the server of `serverUrl` (any
 * database on it that the user may connect to, e.g. `postgres://postgres@127.0.0.1:5432/test`).
 *
 * @example
 * ```ts
 * const database = await createTestDatabase(process.env.TOLLGATE_TEST_DATABASE_URL!);
 * const store = await createPostgresStore({ url: database.url });
 * // ...
 * await store.close();
 * await database.drop();
 * ```
 */
export async function createTestDatabase(serverUrl: string): Promise<TestDatabase> {
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  const name = `tollgate_test_${randomBytes(6).toString('hex')}`;
  try {
    await admin.unsafe(`create database ${name}`);
  } catch (error) {
    await admin.end();
    throw error;
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      try {
        await admin.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await admin.end();
      }
    },
  };
}
