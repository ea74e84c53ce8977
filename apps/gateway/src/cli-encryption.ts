/**
 * `tollgate encryption show` and `tollgate encryption rotate`: the gateway's encryption keys
 * in the data dir (API keys are `tollgate keys`).
 */
import { parseArgs } from 'node:util';
import { activeKeys, type KeySet, p256PublicKeyToHex } from '@tollgate/ecies';
import { type Output, parseDurationSeconds, table } from './cli-admin.js';
import { isConfigError, loadConfig } from './config.js';
import { keySetPath, loadOrCreateKeySet, obolKey, rotateKeySetFile } from './encryption.js';

export const ENCRYPTION_HELP = `tollgate encryption — the gateway's encryption keys

Usage:
  tollgate encryption show
  tollgate encryption rotate [--grace DURATION] [--kem p256|x25519]

  The keys live in <data dir>/encryption-keys.json (mode 0600), made on the gateway's first
  start. Clients encrypt to the current key (GET /v1/enclave/pubkey serves its P-256 public key);
  after a rotation the previous key is still accepted for the grace period. A running gateway
  reads the file again on SIGHUP (kill -HUP <pid>), or when it restarts.

Options:
      --grace DURATION  How long the previous key stays accepted: seconds or 30m, 24h, 7d
                        (default 24h)
      --kem KEM         p256 (default; the Obol format needs it) or x25519
  -c, --config FILE     YAML config file (default: ./tollgate.yaml when it exists)
      --json            Print JSON instead of a table
  -h, --help            Show this help
`;

function keysJson(set: KeySet, now: number) {
  const active = new Set(activeKeys(set, now).map((key) => key.id));
  const published = obolKey(set, now)?.id;
  return set.keys.map((key, index) => ({
    id: key.id,
    kem: key.kem === 0x0010 ? 'p256' : 'x25519',
    state: index === 0 ? 'current' : active.has(key.id) ? 'retiring' : 'retired',
    obol: key.id === published,
    created_at: new Date(key.createdAt).toISOString(),
    retires_at: key.retiresAt === undefined ? null : new Date(key.retiresAt).toISOString(),
    public_key:
      key.kem === 0x0010
        ? p256PublicKeyToHex(key.publicKey)
        : Buffer.from(key.publicKey).toString('hex'),
  }));
}

/** `tollgate encryption ...` */
export async function encryptionCommand(
  args: string[],
  io: Output,
  now = Date.now,
): Promise<number> {
  let values: { config?: string; json?: boolean; help?: boolean; grace?: string; kem?: string };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: {
        config: { type: 'string', short: 'c' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        grace: { type: 'string' },
        kem: { type: 'string' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (error) {
    io.err(`tollgate: ${(error as Error).message}\nRun "tollgate encryption --help" for usage.\n`);
    return 2;
  }
  const [action, ...extra] = positionals;
  if (values.help || action === undefined) {
    io.out(ENCRYPTION_HELP);
    return values.help ? 0 : 2;
  }
  const usage = (message: string) => {
    io.err(`tollgate: ${message}\nRun "tollgate encryption --help" for usage.\n`);
    return 2;
  };
  if (extra.length > 0) return usage(`unexpected argument "${extra[0]}"`);
  if (action !== 'show' && action !== 'rotate') {
    return usage(`unknown action "${action}" (show, rotate)`);
  }
  let graceSeconds = 86_400;
  if (values.grace !== undefined) {
    const seconds = parseDurationSeconds(values.grace);
    if (seconds === undefined)
      return usage('--grace must be seconds or a duration like 30m, 24h, 7d');
    graceSeconds = seconds;
  }
  let kem: number | undefined;
  if (values.kem !== undefined) {
    if (values.kem !== 'p256' && values.kem !== 'x25519')
      return usage('--kem must be p256 or x25519');
    kem = values.kem === 'p256' ? 0x0010 : 0x0020;
  }
  let dataDir: string;
  try {
    dataDir = loadConfig({
      argv: values.config !== undefined ? { config: values.config } : {},
    }).dataDir;
  } catch (error) {
    if (!isConfigError(error)) throw error;
    io.err(`tollgate: ${error.message}\n`);
    return 1;
  }
  let set: KeySet;
  try {
    set =
      action === 'show'
        ? loadOrCreateKeySet(dataDir, now()).set
        : rotateKeySetFile(dataDir, {
            graceMs: graceSeconds * 1000,
            now: now(),
            ...(kem !== undefined ? { kem } : {}),
          });
  } catch (error) {
    if (!isConfigError(error)) throw error;
    io.err(`tollgate: ${error.message}\n`);
    return 1;
  }
  const rows = keysJson(set, now());
  if (values.json) {
    io.out(`${JSON.stringify({ file: keySetPath(dataDir), keys: rows }, null, 2)}\n`);
  } else {
    io.out(
      table(
        ['id', 'kem', 'state', 'obol', 'created', 'retires', 'public key'],
        rows.map((row) => [
          row.id,
          row.kem,
          row.state,
          row.obol ? 'yes' : '',
          row.created_at,
          row.retires_at,
          `${row.public_key.slice(0, 16)}...`,
        ]),
      ),
    );
  }
  if (action === 'rotate') {
    io.err(
      `tollgate: key ${rows[0]!.id} is now current; the previous key is accepted for ${values.grace ?? '24h'} more. Send the running gateway SIGHUP (kill -HUP <pid>), or restart it, to serve it.\n`,
    );
  }
  return 0;
}
