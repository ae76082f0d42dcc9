/**
 * `tapas serve --etcd`: the control plane's link to the agents through etcd.
 * The publisher is the service's desired-state feed; the state watcher fills
 * the observation book. No data path runs in this process.
 */
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';

import type { ObservationBook } from '../service/observations.js';
import type { Store } from '../store/store.js';
import { connectEtcd, type EtcdSettings } from './etcd.js';
import { Keyspace } from './keys.js';
import { EtcdPublisher } from './publisher.js';
import { EtcdStateWatcher } from './state-watcher.js';

export class ClusterLink {
  readonly client: Etcd3;
  readonly keys: Keyspace;
  readonly publisher: EtcdPublisher;
  readonly watcher: EtcdStateWatcher;

  constructor(store: Store, settings: EtcdSettings, book: ObservationBook, logger: Logger) {
    this.client = connectEtcd(settings);
    this.keys = new Keyspace(settings.prefix);
    this.publisher = new EtcdPublisher(this.client, this.keys, store, logger.child({ component: 'publisher' }));
    this.watcher = new EtcdStateWatcher(this.client, this.keys, book, this.publisher, logger.child({ component: 'agents' }));
  }

  /** Reads what etcd has, publishes the store's state; keeps retrying in the background when etcd does not answer. */
  async start(): Promise<void> {
    await this.watcher.start();
    await this.publisher.start();
  }

  async close(): Promise<void> {
    await this.watcher.close();
    await this.publisher.close();
    this.client.close();
  }
}
