/**
 * `guardPool(knex)`: knex's pool hands out only a pg connection that is idle outside any transaction.
 *
 * A pooled connection can come back dirty, and knex returns it to the pool all the same. pg's `query_timeout` fires
 * on the client side while the server still runs the statement: inside a transaction, knex's `ROLLBACK` then waits
 * behind that statement, times out unsent too, and is dropped, so the connection goes back to the pool with its
 * server-side transaction open (and after the server's answer, `idle in transaction`). Every statement later run on
 * it joins that transaction: its writes are acknowledged and never committed (a one-time code's replay guard, a
 * lockout charge, a vault update), its reads see an old snapshot, and once the transaction has failed each one is a
 * 25P02 error, until the pool drops the connection.
 *
 * So before a connection is handed out, its last ReadyForQuery must say "idle" outside a transaction
 * (`getTransactionStatus()`, pg ≥ 8.21, the kit's peer range); otherwise knex's validation refuses it, the pool closes
 * it (the server rolls back what it held) and hands out another. A connection with no status yet (new), or a client
 * that cannot tell (pg-native), passes. Checked on every acquire: one call.
 *
 * A query still running is not a reason to refuse: knex puts a connection back as soon as a caller's query has failed
 * or its stream has ended, before Postgres's ReadyForQuery arrives (a caught unique violation, a stream left early),
 * and closing such a connection killed the query it was finishing, hung the stream and cost a new connection per
 * caught error (found by an adopter review). A statement of the next caller waits behind it in pg's queue instead.
 * Inside a transaction the status already says 'T': the case above is still refused. (So is a transaction whose
 * COMMIT failed, put back before its ReadyForQuery: it is closed and replaced, a reconnect, nothing lost.)
 */
import type { Knex } from 'knex';

/** The part of a pg `Client` the guard reads. */
interface PgClientState {
  getTransactionStatus?: () => string | null;
}

/** The part of knex's client the guard wraps: the hook its pool's `validate` ends with. */
interface ValidatingClient {
  validateConnection(connection: unknown): boolean | Promise<boolean>;
}

const guarded = new WeakSet<object>();

/** Whether a pg connection may be handed out: its last ReadyForQuery said idle, outside a transaction. */
export function isIdleConnection(connection: unknown): boolean {
  const state = connection as PgClientState;
  let status: string | null = null;
  try {
    // pg-native's client forwards this to a native library that may not have it: then the status is not known.
    status = typeof state.getTransactionStatus === 'function' ? state.getTransactionStatus() : null;
  } catch {
    status = null;
  }
  return status === null || status === 'I';
}

export function guardPool(knex: Knex): void {
  const client = knex.client as unknown as ValidatingClient & { driver?: { Client?: { prototype?: object } } };
  if (guarded.has(client) || typeof client.validateConnection !== 'function') return;
  guarded.add(client);
  const pgClient = client.driver?.Client?.prototype as PgClientState | undefined;
  if (pgClient && typeof pgClient.getTransactionStatus !== 'function') {
    process.emitWarning('express-mfa-kit: this pg has no getTransactionStatus() (pg < 8.21): knex\'s pool cannot tell a connection left inside a transaction after a query timeout; upgrade pg', { code: 'MFA_KIT_PG_VERSION' });
  }
  const validate = client.validateConnection.bind(client);
  client.validateConnection = (connection: unknown) => isIdleConnection(connection) && validate(connection);
}
