/**
 * The metrics service that SIGKILLs itself right after its first successful insert, before
 * acking it: the crash test proves that the redelivered batch makes no duplicate rows. The
 * production service has no such switch; this wraps it with the sink's afterInsert hook.
 */
import { runMetricsService } from '../../services/metrics-sink/main.js';

await runMetricsService(undefined, {
  afterInsert: (batch) => {
    process.stderr.write(`crashing-metrics-sink: inserted ${JSON.stringify(batch)}, killing myself before the ack\n`);
    process.kill(process.pid, 'SIGKILL');
    return new Promise<void>(() => undefined);
  },
});
