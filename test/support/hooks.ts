/**
 * Mocha root hooks (loaded through `require` in .mocharc.json): stop the
 * per-process test services once the whole run is over.
 */
import { stopPostgres } from './postgres.js';
import { stopRedisServers } from './redis.js';

export const mochaHooks = {
  async afterAll(this: Mocha.Context): Promise<void> {
    this.timeout(60_000);
    const results = await Promise.allSettled([stopPostgres(), stopRedisServers()]);
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (errors.length > 0) throw new AggregateError(errors, 'stopping test services failed');
  },
};
