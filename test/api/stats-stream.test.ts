import { describe, expect, it } from 'vitest';

import { DaemonProcess } from './daemon-process.js';

describe('the stats stream', () => {
  it('ends when the daemon stops: an open watcher does not hold up SIGTERM', async () => {
    const daemon = await DaemonProcess.start();
    try {
      const response = await fetch(`${daemon.url}/v2.0/taas/stats/stream?interval=0.2`, {
        headers: { accept: 'text/event-stream' }, signal: AbortSignal.timeout(20_000),
      });
      const reader = response.body!.getReader();
      const first = await reader.read();
      expect(new TextDecoder().decode(first.value)).toMatch(/^event: stats\ndata: \{"stats":/);
      const started = Date.now();
      expect(await daemon.stop()).toBe(0);
      expect(Date.now() - started).toBeLessThan(3000);
      // The stream was ended by the daemon, not left hanging.
      for (;;) {
        const { done } = await reader.read();
        if (done) break;
      }
    } finally {
      await daemon.stop();
      daemon.removeState();
    }
  });
});
