/** `promise`, or a rejection naming `what` once `ms` have passed without its answer. */
export function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  // race() subscribes to `promise`, so its late rejection is handled, not an unhandled rejection.
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
