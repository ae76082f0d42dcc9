/**
 * The embedded store: one SQLite file in the state directory, WAL journal,
 * full fsync on commit, so every change the API acknowledged survives a
 * `kill -9` or a power cut. Only the daemon opens it: the file is locked
 * exclusively for as long as the process lives, and the kernel drops that lock
 * when the process dies, however it dies.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { attributesOf, columnsOf, RESOURCE_KINDS } from '../model/contract.js';
import type {
  MirrorDirections, Port, ResourceKind, ResourceOf, TapFlow, TapMirror, TapService,
} from '../model/resources.js';
import { MIGRATIONS } from './migrations.js';

export const STORE_FILE = 'tapas.sqlite';

export class StoreError extends Error {}

/** A write the database refused because it would break a UNIQUE constraint. */
export class UniqueViolation extends StoreError {
  constructor(readonly constraint: string) {
    super(`UNIQUE constraint failed: ${constraint}`);
  }
}

const TABLES: Record<ResourceKind, string> = {
  port: 'ports',
  tap_service: 'tap_services',
  tap_flow: 'tap_flows',
  tap_mirror: 'tap_mirrors',
};

/**
 * Columns each kind stores directly: those the resource contract names, and
 * the record's `deleting` flag (tap mirror directions live in their own table;
 * statuses, reasons and MAC addresses are observations, not stored here).
 */
const COLUMNS = Object.fromEntries(RESOURCE_KINDS.map((kind) => [kind, [...columnsOf(kind), 'deleting']])) as unknown as Record<ResourceKind, readonly string[]>;

/** Columns an update may set: those of the attributes the contract lets a client change (allow_put). */
const UPDATABLE = Object.fromEntries(RESOURCE_KINDS.map((kind) => [kind, attributesOf(kind)
  .flatMap(([, { put, store }]) => (put && 'column' in store ? [store.column] : []))])) as unknown as Record<ResourceKind, readonly string[]>;

/** Every resource, read in one transaction. */
export interface Snapshot {
  ports: Port[];
  tapServices: TapService[];
  tapFlows: TapFlow[];
  tapMirrors: TapMirror[];
}

export function timestamp(date = new Date()): string {
  // Neutron's format: seconds, UTC, no fraction.
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export class Store {
  private readonly db: Database.Database;
  /**
   * Every kind's records as last read (frozen: callers share them), so that a
   * list or snapshot without a write since costs no query. Any write forgets
   * all of them (a port's delete cascades over the other tables); a failed
   * transaction too, since a read inside it may have seen its rolled-back writes.
   */
  private readonly cached = new Map<ResourceKind, ReadonlyArray<ResourceOf[ResourceKind]>>();
  /** A write happened in the transaction in progress: what is read now may yet be rolled back. */
  private wroteInTransaction = false;

  /** Opens (creating if needed) the store in stateDir and brings its schema up to date. */
  constructor(stateDir: string) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const path = join(stateDir, STORE_FILE);
    // Only this process ever uses the file: waiting on a lock means another daemon holds it.
    this.db = new Database(path, { timeout: 1000 });
    try {
      this.db.pragma('journal_mode = WAL');
      // FULL: a commit reaches the disk before the API answers, not just the OS cache.
      this.db.pragma('synchronous = FULL');
      this.db.pragma('foreign_keys = ON');
      // Exclusive: a second daemon on the same state directory fails here instead
      // of both driving the data path from one store.
      this.db.pragma('locking_mode = EXCLUSIVE');
      this.db.prepare('BEGIN IMMEDIATE').run();
      this.db.prepare('COMMIT').run();
    } catch (error) {
      this.db.close();
      const code = (error as { code?: string }).code;
      if (code === 'SQLITE_BUSY') {
        throw new StoreError(`the store ${path} is in use by another tapas daemon`);
      }
      throw new StoreError(`cannot open the store ${path}: ${(error as Error).message}`);
    }
    this.migrate(path);
  }

  private migrate(path: string): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    if (current > MIGRATIONS.length) {
      this.db.close();
      throw new StoreError(`the store ${path} has schema version ${current}, newer than this tapas `
        + `(${MIGRATIONS.length}): upgrade tapas or use another state directory`);
    }
    MIGRATIONS.slice(current).forEach((sql, index) => {
      this.db.transaction(() => {
        this.db.exec(sql);
        this.db.pragma(`user_version = ${current + index + 1}`);
      })();
    });
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** Runs fn in one transaction: all of its writes commit together or not at all. */
  transaction<T>(fn: () => T): T {
    try {
      return this.db.transaction(fn).immediate();
    } catch (error) {
      this.forget();
      throw error;
    } finally {
      if (!this.db.inTransaction) this.wroteInTransaction = false;
    }
  }

  /** Before every write: what is cached may no longer be true. */
  private forget(): void {
    this.cached.clear();
    if (this.db.inTransaction) this.wroteInTransaction = true;
  }

  insert<K extends ResourceKind>(kind: K, resource: ResourceOf[K]): void {
    const columns = COLUMNS[kind];
    const sql = `INSERT INTO ${TABLES[kind]} (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`;
    this.write(() => {
      this.forget();
      this.db.prepare(sql).run(toRow(resource, columns));
      if (kind === 'tap_mirror') this.insertTunnels(resource as TapMirror);
    });
  }

  private insertTunnels(mirror: TapMirror): void {
    const statement = this.db.prepare(
      'INSERT INTO tap_mirror_tunnels (tap_mirror_id, direction, tunnel_id, remote_ip) VALUES (?, ?, ?, ?)');
    for (const [direction, tunnelId] of Object.entries(mirror.directions)) {
      statement.run(mirror.id, direction, tunnelId, mirror.remote_ip);
    }
  }

  get<K extends ResourceKind>(kind: K, id: string): ResourceOf[K] | undefined {
    const row = this.db.prepare(`SELECT * FROM ${TABLES[kind]} WHERE id = ?`).get(id) as Record<string, unknown> | undefined;
    return row ? this.fromRows(kind, [row])[0] : undefined;
  }

  /**
   * Every resource of a kind, oldest first. The array and its records are
   * shared by every caller until the next write, and frozen: copy to change.
   */
  list<K extends ResourceKind>(kind: K): Array<ResourceOf[K]> {
    if (!this.db.inTransaction) this.wroteInTransaction = false;
    const cached = this.cached.get(kind);
    if (cached) return cached as Array<ResourceOf[K]>;
    const rows = this.db.prepare(`SELECT * FROM ${TABLES[kind]} ORDER BY rowid`).all() as Array<Record<string, unknown>>;
    const records = this.fromRows(kind, rows, true);
    for (const record of records) {
      if (kind === 'tap_mirror') Object.freeze((record as TapMirror).directions);
      Object.freeze(record);
    }
    Object.freeze(records);
    if (!this.wroteInTransaction) this.cached.set(kind, records);
    return records;
  }

  /** Resources of a kind whose column equals value, oldest first. */
  listWhere<K extends ResourceKind>(kind: K, column: string, value: string): Array<ResourceOf[K]> {
    if (!COLUMNS[kind].includes(column)) throw new StoreError(`${TABLES[kind]} has no column ${column}`);
    const rows = this.db.prepare(`SELECT * FROM ${TABLES[kind]} WHERE ${column} = ? ORDER BY rowid`)
      .all(value) as Array<Record<string, unknown>>;
    return this.fromRows(kind, rows);
  }

  /** How many resources of a kind a project holds, not counting those being deleted. */
  count(kind: ResourceKind, projectId: string): number {
    const row = this.db.prepare(
      `SELECT count(*) AS n FROM ${TABLES[kind]} WHERE project_id = ? AND deleting = 0`,
    ).get(projectId) as { n: number };
    return row.n;
  }

  /** Sets the updatable attributes given (name and description in the TaaS API). */
  updateAttributes<K extends ResourceKind>(kind: K, id: string, changes: object): void {
    const sets = Object.keys(changes).filter((key) => UPDATABLE[kind].includes(key));
    const values = Object.fromEntries(sets.map((key) => [key, (changes as Record<string, unknown>)[key]]));
    this.forget();
    this.db.prepare(`UPDATE ${TABLES[kind]} SET ${[...sets, 'updated_at'].map((c) => `${c} = @${c}`).join(', ')} WHERE id = @id`)
      .run({ ...values, updated_at: timestamp(), id });
  }

  /** Marks rows as being deleted (PENDING_DELETE): they wait for every involved host to release them. */
  markDeleting(kind: ResourceKind, ids: string[]): void {
    const statement = this.db.prepare(`UPDATE ${TABLES[kind]} SET deleting = 1, updated_at = ? WHERE id = ?`);
    const now = timestamp();
    this.forget();
    for (const id of ids) statement.run(now, id);
  }



  /** Whether any row waits in PENDING_DELETE. */
  hasDeleting(): boolean {
    return Object.values(TABLES).some((table) => this.db.prepare(`SELECT 1 FROM ${table} WHERE deleting = 1 LIMIT 1`).get() !== undefined);
  }

  /** Deletes the given rows only if they are being deleted. */
  purge(kind: ResourceKind, ids: string[]): number {
    const statement = this.db.prepare(`DELETE FROM ${TABLES[kind]} WHERE id = ? AND deleting = 1`);
    this.forget();
    let removed = 0;
    for (const id of ids) removed += statement.run(id).changes;
    return removed;
  }

  snapshot(): Snapshot {
    return this.db.transaction(() => ({
      ports: this.list('port'),
      tapServices: this.list('tap_service'),
      tapFlows: this.list('tap_flow'),
      tapMirrors: this.list('tap_mirror'),
    }))();
  }

  /** The mirror already sending tunnelId to remoteIp, if any. */
  tunnelOwner(remoteIp: string, tunnelId: number): { tap_mirror_id: string; direction: string } | undefined {
    return this.db.prepare('SELECT tap_mirror_id, direction FROM tap_mirror_tunnels WHERE remote_ip = ? AND tunnel_id = ?')
      .get(remoteIp, tunnelId) as { tap_mirror_id: string; direction: string } | undefined;
  }

  quotaOverrides(projectId: string): Record<string, number> {
    const rows = this.db.prepare('SELECT resource, hard_limit FROM quotas WHERE project_id = ?')
      .all(projectId) as Array<{ resource: string; hard_limit: number }>;
    return Object.fromEntries(rows.map((row) => [row.resource, row.hard_limit]));
  }

  setQuotaOverride(projectId: string, resource: string, limit: number): void {
    this.db.prepare('INSERT INTO quotas (project_id, resource, hard_limit) VALUES (?, ?, ?) '
      + 'ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit').run(projectId, resource, limit);
  }

  clearQuotaOverrides(projectId: string): void {
    this.db.prepare('DELETE FROM quotas WHERE project_id = ?').run(projectId);
  }

  /** Projects with quota overrides. */
  quotaProjects(): string[] {
    return (this.db.prepare('SELECT DISTINCT project_id FROM quotas ORDER BY project_id').all() as Array<{ project_id: string }>)
      .map((row) => row.project_id);
  }

  private write(fn: () => void): void {
    try {
      this.transaction(fn);
    } catch (error) {
      const { code, message } = error as { code?: string; message: string };
      if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new UniqueViolation(message.replace(/^UNIQUE constraint failed: /, ''));
      }
      throw error;
    }
  }

  /**
   * Records from rows. A tap mirror's directions are read in one query for
   * all rows (every tunnel when `all`, else those of the rows), not one per row.
   */
  private fromRows<K extends ResourceKind>(kind: K, rows: Array<Record<string, unknown>>, all = false): Array<ResourceOf[K]> {
    const records: Array<Record<string, unknown>> = rows.map((stored) => ({ ...stored, deleting: stored.deleting === 1 }));
    if (kind !== 'tap_mirror' || rows.length === 0) return records as unknown as Array<ResourceOf[K]>;
    const tunnels = (all
      ? this.db.prepare('SELECT tap_mirror_id, direction, tunnel_id FROM tap_mirror_tunnels').all()
      : this.db.prepare(`SELECT tap_mirror_id, direction, tunnel_id FROM tap_mirror_tunnels WHERE tap_mirror_id IN (${rows.map(() => '?').join(', ')})`)
        .all(...rows.map((row) => row.id))) as Array<{ tap_mirror_id: string; direction: 'IN' | 'OUT' | 'BOTH'; tunnel_id: number }>;
    const directions = new Map<string, MirrorDirections>();
    for (const tunnel of tunnels) {
      const of = directions.get(tunnel.tap_mirror_id) ?? {};
      of[tunnel.direction] = tunnel.tunnel_id;
      directions.set(tunnel.tap_mirror_id, of);
    }
    // IN before OUT (BOTH last), whatever order the rows came in.
    const ordered = (of: MirrorDirections | undefined): MirrorDirections => ({
      ...(of?.IN === undefined ? {} : { IN: of.IN }), ...(of?.OUT === undefined ? {} : { OUT: of.OUT }),
      ...(of?.BOTH === undefined ? {} : { BOTH: of.BOTH }),
    });
    return records.map((record) => ({ ...record, directions: ordered(directions.get(String(record.id))) })) as unknown as Array<ResourceOf[K]>;
  }

}

function toRow(resource: object, columns: readonly string[]): Record<string, unknown> {
  const source = resource as Record<string, unknown>;
  return Object.fromEntries(columns.map((column) => {
    const value = source[column];
    return [column, typeof value === 'boolean' ? Number(value) : value ?? null];
  }));
}
