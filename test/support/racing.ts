/**
 * Races made deterministic: a storage whose `mfaDevices.<method>` runs a change once, just before the call reaches
 * Postgres or just after it answered, as another request or instance writing in that moment would. Every other member
 * is the storage's own.
 */
import type { MfaDeviceStore } from '../../storage/types.js';

type Args<M extends keyof MfaDeviceStore> = Parameters<MfaDeviceStore[M]>;

/** `Reflect.get`, with a method bound to its object. */
const bound = <T extends object>(target: T, prop: string | symbol): unknown => {
  const value: unknown = Reflect.get(target, prop);
  return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
};

export function racingDevices<S extends { mfaDevices: MfaDeviceStore }, M extends keyof MfaDeviceStore>(
  storage: S,
  method: M,
  when: 'before' | 'after' = 'before',
): { storage: S; meanwhile(change: (args: Args<M>) => Promise<unknown>): void } {
  let change: ((args: Args<M>) => Promise<unknown>) | undefined;
  const devices = new Proxy(storage.mfaDevices, {
    get(target, prop) {
      if (prop !== method) return bound(target, prop);
      const real = (target[method] as (...a: Args<M>) => Promise<unknown>).bind(target);
      return async (...args: Args<M>) => {
        const run = change;
        change = undefined;
        if (when === 'before') await run?.(args);
        const answer = await real(...args);
        if (when === 'after') await run?.(args);
        return answer;
      };
    },
  });
  return {
    storage: new Proxy(storage, { get: (target, prop) => (prop === 'mfaDevices' ? devices : bound(target, prop)) }),
    meanwhile: (fn) => {
      change = fn;
    },
  };
}
