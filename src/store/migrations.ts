/**
 * Schema migrations, applied in order inside one transaction each. The
 * database's `user_version` is the number of migrations applied. Append new
 * migrations; never edit one that has shipped.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: the TaaS resources, ports they refer to, and per-project quota overrides.
  `
  CREATE TABLE ports (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    interface     TEXT NOT NULL,
    netns         TEXT,
    host_id       TEXT NOT NULL,
    mac_address   TEXT,
    status        TEXT NOT NULL,
    status_reason TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
  );
  -- One port per interface: two would capture the same traffic twice.
  CREATE UNIQUE INDEX ports_by_interface ON ports (interface, ifnull(netns, ''));

  CREATE TABLE tap_services (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    port_id       TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    status        TEXT NOT NULL,
    status_reason TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
  );
  -- One tap service per port: the port is the single destination of its copies.
  CREATE UNIQUE INDEX tap_services_by_port ON tap_services (port_id);

  CREATE TABLE tap_flows (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    tap_service_id TEXT NOT NULL REFERENCES tap_services (id) ON DELETE CASCADE,
    source_port    TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    direction      TEXT NOT NULL CHECK (direction IN ('IN', 'OUT', 'BOTH')),
    vlan_filter    TEXT,
    status         TEXT NOT NULL,
    status_reason  TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
  );
  CREATE INDEX tap_flows_by_service ON tap_flows (tap_service_id);
  CREATE INDEX tap_flows_by_source ON tap_flows (source_port);

  CREATE TABLE tap_mirrors (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    port_id       TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    remote_ip     TEXT NOT NULL,
    mirror_type   TEXT NOT NULL CHECK (mirror_type IN ('gre', 'erspanv1')),
    status        TEXT NOT NULL,
    status_reason TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
  );
  CREATE INDEX tap_mirrors_by_port ON tap_mirrors (port_id);

  -- A tap mirror's directions, one row each, so that the database itself
  -- refuses a tunnel id already used toward the same remote.
  CREATE TABLE tap_mirror_tunnels (
    tap_mirror_id TEXT NOT NULL REFERENCES tap_mirrors (id) ON DELETE CASCADE,
    direction     TEXT NOT NULL CHECK (direction IN ('IN', 'OUT')),
    tunnel_id     INTEGER NOT NULL,
    remote_ip     TEXT NOT NULL,
    PRIMARY KEY (tap_mirror_id, direction),
    UNIQUE (remote_ip, tunnel_id)
  );

  CREATE TABLE quotas (
    project_id TEXT NOT NULL,
    resource   TEXT NOT NULL,
    hard_limit INTEGER NOT NULL,
    PRIMARY KEY (project_id, resource)
  );
  `,
  // 2: the record holds only what users asked for. Statuses, reasons and MAC
  // addresses are observations of the agents, kept apart; a delete in progress
  // is desired state (the user asked), so it stays as a flag.
  `
  ALTER TABLE ports ADD COLUMN deleting INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE tap_services ADD COLUMN deleting INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE tap_flows ADD COLUMN deleting INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE tap_mirrors ADD COLUMN deleting INTEGER NOT NULL DEFAULT 0;
  UPDATE ports SET deleting = 1 WHERE status = 'PENDING_DELETE';
  UPDATE tap_services SET deleting = 1 WHERE status = 'PENDING_DELETE';
  UPDATE tap_flows SET deleting = 1 WHERE status = 'PENDING_DELETE';
  UPDATE tap_mirrors SET deleting = 1 WHERE status = 'PENDING_DELETE';
  ALTER TABLE ports DROP COLUMN status;
  ALTER TABLE ports DROP COLUMN status_reason;
  ALTER TABLE ports DROP COLUMN mac_address;
  ALTER TABLE tap_services DROP COLUMN status;
  ALTER TABLE tap_services DROP COLUMN status_reason;
  ALTER TABLE tap_flows DROP COLUMN status;
  ALTER TABLE tap_flows DROP COLUMN status_reason;
  ALTER TABLE tap_mirrors DROP COLUMN status;
  ALTER TABLE tap_mirrors DROP COLUMN status_reason;
  -- Interfaces are per host: two hosts may each have a tap0.
  DROP INDEX ports_by_interface;
  CREATE UNIQUE INDEX ports_by_interface ON ports (host_id, interface, ifnull(netns, ''));
  `,
  // 3: tap mirrors of type erspanv2 (ERSPAN III) and vxlan, a vxlan mirror's
  // UDP port, and the BOTH direction (tap-mirror-both-direction). SQLite
  // cannot change a CHECK in place: both tables are built anew and copied.
  // The tunnels go into a table that refers to the new mirrors table before
  // the old ones are dropped (dropping tap_mirrors first would cascade into
  // its tunnels); the renames carry the reference along.
  `
  CREATE TABLE tap_mirrors_new (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    port_id       TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    remote_ip     TEXT NOT NULL,
    mirror_type   TEXT NOT NULL CHECK (mirror_type IN ('gre', 'erspanv1', 'erspanv2', 'vxlan')),
    udp_port      INTEGER CHECK (udp_port BETWEEN 1 AND 65535),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    deleting      INTEGER NOT NULL DEFAULT 0
  );
  INSERT INTO tap_mirrors_new (id, project_id, name, description, port_id, remote_ip, mirror_type, udp_port, created_at, updated_at, deleting)
    SELECT id, project_id, name, description, port_id, remote_ip, mirror_type, NULL, created_at, updated_at, deleting FROM tap_mirrors;
  CREATE TABLE tap_mirror_tunnels_new (
    tap_mirror_id TEXT NOT NULL REFERENCES tap_mirrors_new (id) ON DELETE CASCADE,
    direction     TEXT NOT NULL CHECK (direction IN ('IN', 'OUT', 'BOTH')),
    tunnel_id     INTEGER NOT NULL,
    remote_ip     TEXT NOT NULL,
    PRIMARY KEY (tap_mirror_id, direction),
    UNIQUE (remote_ip, tunnel_id)
  );
  INSERT INTO tap_mirror_tunnels_new (tap_mirror_id, direction, tunnel_id, remote_ip)
    SELECT tap_mirror_id, direction, tunnel_id, remote_ip FROM tap_mirror_tunnels;
  DROP TABLE tap_mirror_tunnels;
  DROP TABLE tap_mirrors;
  ALTER TABLE tap_mirrors_new RENAME TO tap_mirrors;
  ALTER TABLE tap_mirror_tunnels_new RENAME TO tap_mirror_tunnels;
  CREATE INDEX tap_mirrors_by_port ON tap_mirrors (port_id);
  `,
  // 4: what of the selected traffic is sent (tapas-filter, tapas-snaplen,
  // tapas-sampling): a pcap-filter expression, a snaplen, one in N. The
  // attribute `filter` is stored as packet_filter (FILTER is an SQL keyword).
  `
  ALTER TABLE tap_flows ADD COLUMN packet_filter TEXT;
  ALTER TABLE tap_flows ADD COLUMN snaplen INTEGER CHECK (snaplen BETWEEN 64 AND 262144);
  ALTER TABLE tap_flows ADD COLUMN sample_rate INTEGER CHECK (sample_rate >= 1);
  ALTER TABLE tap_mirrors ADD COLUMN packet_filter TEXT;
  ALTER TABLE tap_mirrors ADD COLUMN snaplen INTEGER CHECK (snaplen BETWEEN 64 AND 262144);
  ALTER TABLE tap_mirrors ADD COLUMN sample_rate INTEGER CHECK (sample_rate >= 1);
  `,
];
