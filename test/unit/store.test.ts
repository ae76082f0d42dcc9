import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { Port, TapMirror, TapService } from '../../src/model/resources.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { Store, STORE_FILE, StoreError, UniqueViolation } from '../../src/store/store.js';

const base = { project_id: 'p', name: '', description: '', deleting: false, created_at: 't', updated_at: 't' };
const port = (id: string, ifname: string): Port => ({ ...base, id, interface: ifname, netns: 'ns', host_id: 'h' });

describe('Store (SQLite file)', () => {
  let dir: string;
  let store: Store;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tapas-store-'));
    store = new Store(dir);
  });

  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates one WAL-mode file at the latest schema version', () => {
    expect(store.schemaVersion).toBe(MIGRATIONS.length);
    store.close();
    const db = new Database(join(dir, STORE_FILE), { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    db.close();
  });

  it('keeps what was committed across a reopen', () => {
    store.insert('port', port('a', 'eth0'));
    store.insert('tap_service', { ...base, id: 's', port_id: 'a' });
    store.close();
    store = new Store(dir);
    expect(store.get('port', 'a')).toMatchObject({ interface: 'eth0', netns: 'ns' });
    expect(store.list('tap_service').map((s) => s.id)).toEqual(['s']);
  });

  it('lists from memory until a write, never what a failed transaction wrote, and shares frozen records', () => {
    store.insert('port', port('a', 'eth0'));
    const first = store.list('port');
    expect(store.list('port')).toBe(first);
    expect(Object.isFrozen(first) && Object.isFrozen(first[0])).toBe(true);
    expect(store.snapshot().ports).toBe(first);
    // A write inside a transaction that fails: read in between, then rolled back.
    expect(() => store.transaction(() => {
      store.insert('port', port('b', 'eth1'));
      expect(store.list('port').map((p) => p.id)).toEqual(['a', 'b']);
      throw new Error('no');
    })).toThrow('no');
    expect(store.list('port').map((p) => p.id)).toEqual(['a']);
    // Each write is seen at once: an update, a mark, a purge (which cascades over other tables).
    store.insert('tap_service', { ...base, id: 's', port_id: 'a' });
    expect(store.list('tap_service').map((s) => s.id)).toEqual(['s']);
    store.updateAttributes('port', 'a', { name: 'renamed' });
    expect(store.list('port')[0]!.name).toBe('renamed');
    store.markDeleting('port', ['a']);
    expect(store.list('port')[0]!.deleting).toBe(true);
    store.purge('port', ['a']);
    expect(store.list('port')).toEqual([]);
    expect(store.list('tap_service')).toEqual([]);
  });

  it('refuses a second opener while the first one lives', () => {
    expect(() => new Store(dir)).toThrow(/in use by another tapas daemon/);
  });

  it('refuses a store written by a newer tapas', () => {
    store.close();
    const db = new Database(join(dir, STORE_FILE));
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    expect(() => new Store(dir)).toThrow(StoreError);
    expect(() => new Store(dir)).toThrow(/newer than this tapas/);
    store = new Store(mkdtempSync(join(tmpdir(), 'tapas-store-')));
  });

  it('enforces one port per interface of a host and one service per port in the schema itself', () => {
    store.insert('port', port('a', 'eth0'));
    expect(() => store.insert('port', port('b', 'eth0'))).toThrow(UniqueViolation);
    store.insert('port', { ...port('c', 'eth0'), netns: 'other' });
    store.insert('port', { ...port('d', 'eth0'), host_id: 'another-host' });
    const service: TapService = { ...base, id: 's1', port_id: 'a' };
    store.insert('tap_service', service);
    expect(() => store.insert('tap_service', { ...service, id: 's2' })).toThrow(UniqueViolation);
  });

  it('stores tap mirror directions and refuses a tunnel id reused toward the same remote', () => {
    store.insert('port', port('a', 'eth0'));
    const mirror: TapMirror = { ...base, id: 'm1', port_id: 'a', directions: { IN: 5, OUT: 6 }, remote_ip: '192.0.2.1', mirror_type: 'gre' };
    store.insert('tap_mirror', mirror);
    expect(store.get('tap_mirror', 'm1')!.directions).toEqual({ IN: 5, OUT: 6 });
    expect(() => store.insert('tap_mirror', { ...mirror, id: 'm2', directions: { IN: 6 } })).toThrow(UniqueViolation);
    // The failed insert left nothing behind.
    expect(store.list('tap_mirror').map((m) => m.id)).toEqual(['m1']);
    expect(store.tunnelOwner('192.0.2.1', 6)).toEqual({ tap_mirror_id: 'm1', direction: 'OUT' });
  });

  it('cascades a port delete to what uses it', () => {
    store.insert('port', port('mon', 'eth0'));
    store.insert('port', port('vm', 'eth1'));
    store.insert('tap_service', { ...base, id: 's', port_id: 'mon' });
    store.insert('tap_flow', { ...base, id: 'f', tap_service_id: 's', source_port: 'vm', direction: 'IN', vlan_filter: null });
    store.insert('tap_mirror', { ...base, id: 'm', port_id: 'vm', directions: { IN: 1 }, remote_ip: '192.0.2.1', mirror_type: 'gre' });
    store.markDeleting('port', ['vm']);
    store.purge('port', ['vm']);
    expect(store.list('tap_flow')).toEqual([]);
    expect(store.list('tap_mirror')).toEqual([]);
    expect(store.tunnelOwner('192.0.2.1', 1)).toBeUndefined();
    expect(store.list('tap_service')).toHaveLength(1);
  });

  it('keeps no observed state: a row holds what was asked, and a delete in progress as a flag', () => {
    store.insert('port', port('a', 'eth0'));
    store.insert('port', port('b', 'eth1'));
    store.markDeleting('port', ['a']);
    expect(store.get('port', 'a')).toEqual({ ...port('a', 'eth0'), deleting: true, updated_at: expect.any(String) });
    expect(Object.keys(store.get('port', 'b')!)).not.toContain('status');
    expect(store.hasDeleting()).toBe(true);
    expect(store.purge('port', ['a', 'b'])).toBe(1);
    expect(store.list('port').map((p) => p.id)).toEqual(['b']);
    expect(store.hasDeleting()).toBe(false);
  });

  it('moves a version 1 store\'s statuses out of the record, keeping deletes in progress', () => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    const db = new Database(join(dir, STORE_FILE));
    db.exec(MIGRATIONS[0]!);
    db.pragma('user_version = 1');
    db.prepare(`INSERT INTO ports VALUES ('a', 'p', '', '', 'eth0', NULL, 'h', '02:00:00:00:00:01', 'ACTIVE', NULL, 't', 't')`).run();
    db.prepare(`INSERT INTO ports VALUES ('b', 'p', '', '', 'eth1', NULL, 'h', NULL, 'PENDING_DELETE', NULL, 't', 't')`).run();
    db.close();
    store = new Store(dir);
    expect(store.list('port').map((p) => [p.id, p.deleting])).toEqual([['a', false], ['b', true]]);
    expect(Object.keys(store.get('port', 'a')!).sort()).toEqual(
      ['created_at', 'deleting', 'description', 'host_id', 'id', 'interface', 'name', 'netns', 'project_id', 'updated_at']);
  });

  it('takes a version 2 store\'s tap mirrors and tunnels to version 3 whole, then accepts erspanv2, vxlan and BOTH', () => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    const db = new Database(join(dir, STORE_FILE));
    db.pragma('foreign_keys = ON');
    db.exec(MIGRATIONS[0]!);
    db.exec(MIGRATIONS[1]!);
    db.pragma('user_version = 2');
    db.prepare(`INSERT INTO ports (id, project_id, name, description, interface, netns, host_id, created_at, updated_at)
      VALUES ('vm', 'p', '', '', 'eth0', NULL, 'h', 't', 't')`).run();
    db.prepare(`INSERT INTO tap_mirrors (id, project_id, name, description, port_id, remote_ip, mirror_type, created_at, updated_at, deleting)
      VALUES ('m', 'p', 'old', '', 'vm', '192.0.2.1', 'erspanv1', 't', 't', 1)`).run();
    db.prepare(`INSERT INTO tap_mirror_tunnels VALUES ('m', 'IN', 101, '192.0.2.1'), ('m', 'OUT', 102, '192.0.2.1')`).run();
    db.close();
    store = new Store(dir);
    expect(store.schemaVersion).toBe(MIGRATIONS.length);
    expect(store.get('tap_mirror', 'm')).toMatchObject({
      name: 'old', mirror_type: 'erspanv1', udp_port: null, deleting: true, directions: { IN: 101, OUT: 102 },
    });
    const mirror = (id: string, fields: Partial<TapMirror>): TapMirror => ({
      ...base, id, port_id: 'vm', remote_ip: '192.0.2.1', mirror_type: 'gre', udp_port: null, directions: {}, ...fields,
    });
    store.insert('tap_mirror', mirror('e3', { mirror_type: 'erspanv2', directions: { BOTH: 7 } }));
    store.insert('tap_mirror', mirror('vx', { mirror_type: 'vxlan', udp_port: 4790, directions: { IN: 70000 } }));
    expect(store.get('tap_mirror', 'e3')!.directions).toEqual({ BOTH: 7 });
    expect(store.get('tap_mirror', 'vx')).toMatchObject({ udp_port: 4790, directions: { IN: 70000 } });
    // The tunnels still refer to their mirror (cascade) and are still unique per remote.
    expect(() => store.insert('tap_mirror', mirror('dup', { directions: { OUT: 101 } }))).toThrow(UniqueViolation);
    expect(store.tunnelOwner('192.0.2.1', 7)).toEqual({ tap_mirror_id: 'e3', direction: 'BOTH' });
    // m was being deleted before the upgrade: purging it takes its tunnels along.
    expect(store.purge('tap_mirror', ['m'])).toBe(1);
    expect(store.tunnelOwner('192.0.2.1', 101)).toBeUndefined();
  });

  it('counts toward quotas everything but rows being deleted', () => {
    store.insert('port', port('a', 'eth0'));
    store.insert('port', port('b', 'eth1'));
    expect(store.count('port', 'p')).toBe(2);
    store.markDeleting('port', ['a']);
    expect(store.count('port', 'p')).toBe(1);
    expect(store.count('port', 'other')).toBe(0);
  });

  it('rolls a transaction back as a whole', () => {
    expect(() => store.transaction(() => {
      store.insert('port', port('a', 'eth0'));
      throw new Error('changed my mind');
    })).toThrow('changed my mind');
    expect(store.list('port')).toEqual([]);
  });
});
