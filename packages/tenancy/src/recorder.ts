/**
 * Usage, reservation, payment and audit records: written to the database in batches, off the
 * hot path, without losing one to a crash.
 *
 * Every record is first appended to a journal file in the data dir, by one synchronous write
 * per turn of the event loop for all of that turn's records (it survives the process being
 * killed, since the kernel holds the bytes), and queued. A timer writes the queue to the store in one transaction per batch;
 * once everything a journal segment holds is in the database, the segment is deleted. At
 * start, {@link Recorder.recover} replays the segments a previous process left behind
 * (writes are idempotent by record id) and records the reservations it left open as
 * `interrupted` usage at their reserved figures.
 */
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type {
  AuditEntry,
  PaymentRecord,
  RecordBatch,
  ReservationRecord,
  TenancyStore,
  UsageEvent,
} from './types.js';

/** Options for {@link createRecorder}. */
export interface RecorderOptions {
  store: TenancyStore;
  /** Identifies this gateway's reservations in a shared database. */
  instanceId: string;
  /**
   * Directory of the journal. Without one, records wait only in memory until written (a
   * crash loses what was not yet written): for tests and embedding, not for the gateway.
   */
  journalDir?: string;
  /** How often queued records are written. @default 200 */
  flushIntervalMs?: number;
  /** Records per transaction. @default 500 */
  maxBatch?: number;
  /** How often the store is pinged while nothing is queued, to notice an outage early. @default 5000 */
  pingIntervalMs?: number;
  /** Told when writing fails for the first time and when it works again. */
  onHealthChange?: (healthy: boolean, error?: unknown) => void;
}

/** The batched, crash-safe writer of records. */
export interface Recorder {
  /** Queues an admission's reservation (journaled within this turn of the event loop). */
  reserve(record: ReservationRecord): void;
  /** Queues a usage event (it closes the reservation with the same id). */
  usage(event: UsageEvent): void;
  audit(entry: AuditEntry): void;
  /**
   * Queues an x402 payment. Like usage, accepted even after close: money moved and it must be
   * recorded (the journal keeps it for the next start).
   */
  payment(record: PaymentRecord): void;
  /** Writes everything queued so far. Rejects when the store fails (records stay queued). */
  flush(): Promise<void>;
  /** False after a write or ping failed, until one succeeds. */
  readonly healthy: boolean;
  /** Records queued and not yet written. */
  readonly pending: number;
  /**
   * Replays what a previous process left: journal segments, then its open reservations as
   * `interrupted` usage (returned as `open`, so their concurrency slots can be given back).
   * Call once at start, before the first admission.
   */
  recover(): Promise<{ replayed: number; interrupted: number; open: ReservationRecord[] }>;
  /** Stops the timer and writes what is queued (what cannot be written stays in the journal). */
  close(): Promise<void>;
}

type JournalLine =
  | ({ t: 'r' } & ReservationRecord)
  | ({ t: 'u' } & UsageEvent)
  | ({ t: 'a' } & AuditEntry)
  | ({ t: 'p' } & PaymentRecord);

const SEGMENT = /^segment-\d+-\d+\.jsonl$/;

function emptyBatch(): RecordBatch {
  return { reservations: [], usage: [], audit: [], payments: [] };
}

function batchSize(batch: RecordBatch): number {
  return (
    batch.reservations.length + batch.usage.length + batch.audit.length + batch.payments.length
  );
}

/** Splits a batch into transactions of at most `max` records, reservations first. */
function* chunks(batch: RecordBatch, max: number): Generator<RecordBatch> {
  let chunk = emptyBatch();
  let size = 0;
  for (const kind of ['reservations', 'usage', 'audit', 'payments'] as const) {
    for (const record of batch[kind]) {
      (chunk[kind] as unknown[]).push(record);
      if (++size === max) {
        yield chunk;
        chunk = emptyBatch();
        size = 0;
      }
    }
  }
  if (size > 0) yield chunk;
}

function reviveDates(line: Record<string, unknown>): void {
  if (typeof line.at === 'string') line.at = new Date(line.at);
}

/**
 * Creates the recorder and starts its timer (unref'd: it never keeps a process alive).
 *
 * @example
 * ```ts
 * const recorder = createRecorder({ store, instanceId: 'gw-1', journalDir: '.tollgate/journal' });
 * await recorder.recover();
 * recorder.usage(event);
 * await recorder.close();
 * ```
 */
export function createRecorder(options: RecorderOptions): Recorder {
  const { store, instanceId, journalDir } = options;
  const maxBatch = options.maxBatch ?? 500;
  const pingIntervalMs = options.pingIntervalMs ?? 5000;
  let queue = emptyBatch();
  let healthy = true;
  let closed = false;
  let segment: { path: string; fd: number } | undefined;
  /** Segments closed for writing whose records are not all in the database yet. */
  let written: string[] = [];
  let sequence = 0;
  let running: Promise<void> | undefined;
  let lastContact = Date.now();

  if (journalDir) mkdirSync(journalDir, { recursive: true });

  const setHealthy = (value: boolean, error?: unknown) => {
    if (value !== healthy) {
      healthy = value;
      options.onHealthChange?.(value, error);
    }
  };

  // Lines are written once per turn of the event loop: one system call for all the records
  // of that turn, still before anything else runs (a kill can only take a request that has
  // not finished answering, which the next start records from its reservation).
  let unwritten = '';
  let drainScheduled = false;
  let journalError: unknown;
  const drainJournal = () => {
    drainScheduled = false;
    if (unwritten === '' || !journalDir) return;
    try {
      if (!segment) {
        const path = join(journalDir, `segment-${Date.now()}-${sequence++}.jsonl`);
        segment = { path, fd: openSync(path, 'a', 0o600) };
      }
      writeSync(segment.fd, unwritten);
      unwritten = '';
      if (journalError !== undefined) {
        journalError = undefined;
        setHealthy(true);
      }
    } catch (error) {
      // Kept for the next try; meanwhile admissions are refused (the records still queue).
      journalError = error;
      setHealthy(false, error);
    }
  };
  const append = (line: JournalLine) => {
    if (!journalDir) return;
    unwritten += `${JSON.stringify(line)}\n`;
    if (!drainScheduled) {
      drainScheduled = true;
      setImmediate(drainJournal);
    }
  };

  const writeAll = async (batch: RecordBatch) => {
    for (const chunk of chunks(batch, maxBatch)) await store.writeRecords(chunk);
  };

  const flushOnce = async () => {
    if (batchSize(queue) === 0 && written.length === 0) {
      if (Date.now() - lastContact >= pingIntervalMs) {
        try {
          await store.ping();
          lastContact = Date.now();
          if (journalError === undefined) setHealthy(true);
        } catch (error) {
          setHealthy(false, error);
        }
      }
      return;
    }
    // What arrives from now on goes to a new segment: this one is complete once the batch
    // taken below is written.
    drainJournal();
    if (journalError !== undefined) throw journalError;
    if (segment) {
      closeSync(segment.fd);
      written.push(segment.path);
      segment = undefined;
    }
    const batch = queue;
    queue = emptyBatch();
    // A request that began and ended within one batch needs no reservation row: its usage
    // event is written in the same transaction (the journal still holds both, for a crash).
    if (batch.usage.length > 0 && batch.reservations.length > 0) {
      const settled = new Set(batch.usage.map((event) => event.id));
      batch.reservations = batch.reservations.filter((record) => !settled.has(record.id));
    }
    try {
      await writeAll(batch);
    } catch (error) {
      // Back in front of what came meanwhile; the segments stay on disk.
      queue = {
        reservations: [...batch.reservations, ...queue.reservations],
        usage: [...batch.usage, ...queue.usage],
        audit: [...batch.audit, ...queue.audit],
        payments: [...batch.payments, ...queue.payments],
      };
      setHealthy(false, error);
      throw error;
    }
    lastContact = Date.now();
    for (const path of written) rmSync(path, { force: true });
    written = [];
    setHealthy(true);
  };

  const flush = async (): Promise<void> => {
    while (running) await running.catch(() => {});
    running = flushOnce();
    try {
      await running;
    } finally {
      running = undefined;
    }
  };

  const timer = setInterval(() => {
    if (!running) flush().catch(() => {});
  }, options.flushIntervalMs ?? 200);
  timer.unref();

  const enqueue = (line: JournalLine, push: () => void) => {
    if (closed) throw new Error('The recorder is closed.');
    append(line);
    push();
  };

  return {
    reserve(record) {
      enqueue({ t: 'r', ...record }, () => queue.reservations.push(record));
    },
    usage(event) {
      // Queued even after close: it was served and must be recorded (the journal keeps it).
      append({ t: 'u', ...event });
      queue.usage.push(event);
    },
    audit(entry) {
      enqueue({ t: 'a', ...entry }, () => queue.audit.push(entry));
    },
    payment(record) {
      append({ t: 'p', ...record });
      queue.payments.push(record);
    },
    flush,
    get healthy() {
      return healthy;
    },
    get pending() {
      return batchSize(queue);
    },
    async recover() {
      let replayed = 0;
      if (journalDir) {
        const previous = readdirSync(journalDir)
          .filter((name) => SEGMENT.test(name) && join(journalDir, name) !== segment?.path)
          .sort((a, b) => {
            const [, timeA, seqA] = a.split(/[-.]/);
            const [, timeB, seqB] = b.split(/[-.]/);
            return Number(timeA) - Number(timeB) || Number(seqA) - Number(seqB);
          });
        const batch = emptyBatch();
        for (const name of previous) {
          for (const text of readFileSync(join(journalDir, name), 'utf8').split('\n')) {
            if (text === '') continue;
            let line: JournalLine;
            try {
              line = JSON.parse(text) as JournalLine;
            } catch {
              // A line torn by the crash that left this segment: its record was never queued.
              continue;
            }
            reviveDates(line as unknown as Record<string, unknown>);
            const { t, ...record } = line;
            if (t === 'r') batch.reservations.push(record as ReservationRecord);
            else if (t === 'u') batch.usage.push(record as UsageEvent);
            else if (t === 'a') batch.audit.push(record as AuditEntry);
            else if (t === 'p') batch.payments.push(record as PaymentRecord);
          }
        }
        replayed = batchSize(batch);
        await writeAll(batch);
        for (const name of previous) rmSync(join(journalDir, name), { force: true });
      }
      const open = await store.openReservations(instanceId);
      await writeAll({
        reservations: [],
        usage: open.map(
          (reservation): UsageEvent => ({
            id: reservation.id,
            at: reservation.at,
            tenantId: reservation.tenantId,
            keyId: reservation.keyId,
            model: reservation.model,
            backend: null,
            promptTokens: reservation.promptTokens,
            completionTokens: reservation.completionTokens,
            totalTokens: reservation.promptTokens + reservation.completionTokens,
            estimated: true,
            costMicroUsd: reservation.costMicroUsd,
            status: 'interrupted',
            httpStatus: 0,
            latencyMs: 0,
            firstTokenMs: null,
            requestId: reservation.requestId,
            streamed: reservation.streamed,
            paymentId: null,
          }),
        ),
        audit: [],
        payments: [],
      });
      return { replayed, interrupted: open.length, open };
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      try {
        await flush();
      } finally {
        drainJournal();
        if (segment) {
          closeSync(segment.fd);
          segment = undefined;
        }
      }
    },
  };
}
