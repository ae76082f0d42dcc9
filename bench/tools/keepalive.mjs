// Preloaded into `tapas mirror` by the benchmark (node --import): keeps the
// event loop alive until --duration has passed or a stop signal arrives.
// Needed while `tapas mirror -f json` lets the loop run empty (its duration
// timer is unref'd and nothing else holds the loop), which makes it exit at
// once with nothing printed. Harmless once that is fixed.
const ms = Number(process.env.TAPAS_BENCH_KEEPALIVE_MS ?? 0);
if (ms > 0) {
  const timer = setTimeout(() => {}, ms);
  const release = () => clearTimeout(timer);
  process.once('SIGINT', release);
  process.once('SIGTERM', release);
}
