/** The API's views, as the page reads them (Neutron/TaaS JSON). */

export type Status = 'DOWN' | 'ACTIVE' | 'ERROR' | 'PENDING_DELETE';
export type Kind = 'port' | 'tap_service' | 'tap_flow' | 'tap_mirror';

interface Common {
  id: string;
  name: string;
  description: string;
  project_id: string;
  status: Status;
  status_reason: string | null;
  created_at?: string;
  updated_at?: string;
}

export interface Port extends Common {
  mac_address: string | null;
  'binding:host_id': string;
  'binding:profile': { interface: string; netns?: string | null };
}

export interface TapService extends Common {
  port_id: string;
}

export interface TapFlow extends Common {
  tap_service_id: string;
  source_port: string;
  direction: 'IN' | 'OUT' | 'BOTH';
  vlan_filter: string | null;
}

export interface TapMirror extends Common {
  port_id: string;
  directions: { IN?: number; OUT?: number; BOTH?: number };
  remote_ip: string;
  mirror_type: 'gre' | 'erspanv1' | 'erspanv2' | 'vxlan';
  udp_port: number | null;
}

export interface Agent {
  id: string;
  host: string;
  alive: boolean;
  heartbeat_timestamp: string;
  configurations: { datapath?: string; underlay_ip?: string };
}

export interface Session {
  project_id: string;
  roles: string[];
  admin: boolean;
  can_write: boolean;
}

export interface Rated {
  packets: number | null;
  bytes: number | null;
  drops: Record<string, number>;
  packets_per_second: number | null;
  bits_per_second: number | null;
}

export interface HostStats extends Rated {
  host: string;
  status: string;
  reason: string | null;
  observed_at: string;
}

export interface ResourceStats extends Rated {
  id: string;
  name: string;
  project_id: string;
  status: Status;
  status_reason: string | null;
  hosts: HostStats[];
}

export interface StatsReport {
  time: string;
  tap_flows: Array<ResourceStats & { tap_service_id: string; source_port: string; direction: string }>;
  tap_mirrors: Array<ResourceStats & { port_id: string; remote_ip: string; mirror_type: string; directions: Record<string, Rated & { tunnel_id: number }> }>;
  tap_services: Array<ResourceStats & { port_id: string }>;
}

/** Everything the page shows, as last read. */
export interface Inventory {
  ports: Port[];
  tap_services: TapService[];
  tap_flows: TapFlow[];
  tap_mirrors: TapMirror[];
  /** null: the caller may not list agents (not admin). */
  agents: Agent[] | null;
}

export const KIND_LABEL: Record<Kind, string> = {
  port: 'port',
  tap_service: 'tap service',
  tap_flow: 'tap flow',
  tap_mirror: 'tap mirror',
};

export const COLLECTION: Record<Kind, string> = {
  port: '/v2.0/ports',
  tap_service: '/v2.0/taas/tap_services',
  tap_flow: '/v2.0/taas/tap_flows',
  tap_mirror: '/v2.0/taas/tap_mirrors',
};
