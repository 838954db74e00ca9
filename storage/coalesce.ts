/**
 * Read coalescing (DataLoader's idea, for a hot read): the reads asked for while the event loop handles one
 * round of I/O are sent as ONE statement when that round is over (`setImmediate`), not one each. Under load
 * a round holds several requests, and each statement saved is a pool checkout, a write and a read on the
 * Postgres socket, and a parse in the driver; an idle server sends a lone read at once, as before. The Redis
 * cache's reads use it too (storage/cache/redis.ts: one MGET for the checks of a round).
 *
 * Reads are grouped by what must be equal for one statement to answer them (tenant, filter, page); a group
 * is sent early when it reaches `maxBatch`. A batch is one statement, so its reads see one snapshot; each
 * read still starts after its request asked for it, so a change committed before that is seen. When the
 * statement fails, every read of the batch fails with its error.
 *
 * Why the bound is small (16): with no bound, under load every request in flight lands in one batch, and the
 * server and Postgres take turns (Postgres builds 30 pages while Node waits, then Node answers 30 requests while
 * Postgres waits). A group sent as soon as it holds 16 reads reaches Postgres while Node still reads the
 * rest of the round's requests, and its answers come back while the next statement runs, so the two work
 * side by side (BENCHMARKS.md, fifth round: the trusted-device page +15 % at 16; at 8 the cheap cache-miss
 * lookup lost more to the extra statements than it gained).
 */

export const DEFAULT_MAX_BATCH = 16;

export interface CoalesceOptions<A, R> {
  /** Reads with the same group key can be answered by one statement. */
  group(args: A): string;
  /** Answers a lone read (the statement it would have run alone). */
  one(args: A): Promise<R>;
  /** Answers a batch of two or more reads of one group: one result per read, in order. */
  many(batch: readonly A[]): Promise<readonly R[]>;
  /** Most reads in one statement (see the module comment for why it is small). @default 16 */
  maxBatch?: number;
}

interface Batch<A, R> {
  reads: A[];
  settle: Array<{ resolve(value: R): void; reject(err: unknown): void }>;
}

/** A function that answers reads like `one`, coalescing those asked for in the same round of the event loop. */
export function coalesce<A, R>(options: CoalesceOptions<A, R>): (args: A) => Promise<R> {
  const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
  let open = new Map<string, Batch<A, R>>();
  let scheduled = false;

  const send = (batch: Batch<A, R>): void => {
    const answered =
      batch.reads.length === 1 ? options.one(batch.reads[0]!).then((r) => [r]) : options.many(batch.reads);
    answered.then(
      (results) => batch.settle.forEach((s, i) => s.resolve(results[i]!)),
      (err: unknown) => batch.settle.forEach((s) => s.reject(err)),
    );
  };
  const flush = (): void => {
    scheduled = false;
    const ready = open;
    open = new Map();
    for (const batch of ready.values()) send(batch);
  };

  return (args) =>
    new Promise<R>((resolve, reject) => {
      const key = options.group(args);
      let batch = open.get(key);
      if (!batch) {
        batch = { reads: [], settle: [] };
        open.set(key, batch);
      }
      batch.reads.push(args);
      batch.settle.push({ resolve, reject });
      if (batch.reads.length >= maxBatch) {
        open.delete(key);
        send(batch);
      } else if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
}
