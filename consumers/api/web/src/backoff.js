// Reconnect delays: exponential with full jitter, capped. Pure: `rand` is an argument.

export const BACKOFF = { baseMs: 500, maxMs: 30000 };

export function backoffDelay(attempt, rand, { baseMs, maxMs } = BACKOFF) {
  if (attempt <= 0) return 0; // the first reconnect is immediate: most drops are a proxy's idle cut
  const ceiling = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
  return Math.round(ceiling * rand);
}
