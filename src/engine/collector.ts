import { loadAddon, type CollectorOptions, type CollectorStats, type NativeCollector } from './native.js';

/**
 * A userspace tunnel endpoint: receives GRE and ERSPAN type II packets on raw
 * sockets and writes the inner frames of the selected tunnels to a pcap file
 * or out of an interface. The receiving happens on a native thread.
 */
export class Collector {
  private readonly native: NativeCollector;
  private closed = false;

  /** Throws with a readable reason (no such namespace or interface, no CAP_NET_RAW). */
  constructor(options: CollectorOptions) {
    if ((options.pcapPath === undefined) === (options.toIfname === undefined)) {
      throw new Error('a collector needs exactly one of pcapPath or toIfname');
    }
    this.native = new (loadAddon().NativeCollector)(options);
  }

  stats(): CollectorStats {
    return this.native.stats();
  }

  /** Stops receiving and flushes the output; returns the final counters. */
  close(): CollectorStats {
    if (!this.closed) {
      this.closed = true;
      this.native.close();
    }
    return this.native.stats();
  }
}

export type { CollectorOptions, CollectorStats } from './native.js';
