/**
 * The data directory: the embedded database, the usage journal, this gateway's instance id,
 * and a lock so that two processes never open the embedded database at once (PGlite is a
 * single-process database; a second writer would corrupt it).
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from './config.js';

/** Creates the directory (mode 0700: it holds usage records and, later, keys). */
export function ensureDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
}

/**
 * This gateway's instance id, kept in the data dir so that a restarted gateway finds the
 * reservations it left open. Several gateways sharing PostgreSQL each have their own.
 */
export function instanceId(dataDir: string): string {
  const path = join(dataDir, 'instance-id');
  try {
    const id = readFileSync(path, 'utf8').trim();
    if (/^[A-Za-z0-9-]{8,64}$/.test(id)) return id;
  } catch {
    // None yet: made below.
  }
  const id = randomUUID();
  writeFileSync(path, `${id}\n`, { mode: 0o600 });
  return id;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid holding the embedded database of a data dir, if a live process holds it. */
export function embeddedDatabaseHolder(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'db.pid'), 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) return pid;
  } catch {
    // No lock file.
  }
  return undefined;
}

/**
 * Takes the embedded database's lock for this process; returns its release.
 *
 * @throws {ConfigError} when another live process holds it.
 */
export function lockEmbeddedDatabase(dataDir: string, what: string): () => void {
  const holder = embeddedDatabaseHolder(dataDir);
  if (holder !== undefined) {
    throw new ConfigError(
      [
        `data_dir: the embedded database in ${dataDir} is in use by process ${holder} (a running gateway or CLI). ${what} Stop that process first, use the admin API of the running gateway, or use PostgreSQL (TOLLGATE_DATABASE_URL), which any number of processes can share. (If process ${holder} is not a Tollgate process, its id was reused: delete ${join(dataDir, 'db.pid')}.)`,
      ],
      'The embedded database is busy:',
    );
  }
  const path = join(dataDir, 'db.pid');
  writeFileSync(path, `${process.pid}\n`, { mode: 0o600 });
  return () => {
    try {
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) rmSync(path, { force: true });
    } catch {
      // Already gone.
    }
  };
}
