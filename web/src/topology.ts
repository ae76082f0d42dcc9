/**
 * The topology as a graph: ports, tap services, tap flows, tap mirrors and
 * the mirrors' remote collectors, left to right in the direction the copies
 * travel (mirrored port → tap flow → tap service → its port; mirrored port →
 * tap mirror → remote), grouped by host once there are several. Laid out by
 * dagre (a layered, Sugiyama-style layout with clusters), so that each
 * column holds one role and edges cross as little as it can manage.
 */
import { graphlib, layout } from '@dagrejs/dagre';

import { nameOf, shortId } from './format.js';
import type { Inventory, Kind, Port, Status, StatsReport } from './types.js';

export type NodeKind = Kind | 'remote' | 'agent';

export interface TopologyNode {
  /** `kind:id`: `tap_flow:…`, `remote:192.0.2.10`, `agent:HOST`. */
  key: string;
  kind: NodeKind;
  /** The API resource's id (absent for remotes and agents). */
  id?: string;
  label: string;
  detail: string;
  status: Status | 'REMOTE';
  reason: string | null;
  host: string | null;
}

export interface TopologyEdge {
  from: string;
  to: string;
  label: string;
  /** The status of the resource the edge belongs to (its colour). */
  status: Status | 'REMOTE';
}

export interface Topology {
  nodes: TopologyNode[];
  edges: TopologyEdge[];
  /** Every host a port names or an agent reports for, with its agent's state (null: unknown to this caller). */
  hosts: Array<{ name: string; agent: 'alive' | 'dead' | 'none' | null }>;
}

const DIRECTION_TEXT: Record<string, string> = { IN: 'IN (to the workload)', OUT: 'OUT (from the workload)', BOTH: 'BOTH directions' };
const MIRROR_TEXT: Record<string, string> = { gre: 'GRE', erspanv1: 'ERSPAN II', erspanv2: 'ERSPAN III', vxlan: 'VXLAN' };

export function tunnelText(mirror: { mirror_type: string; directions: { IN?: number; OUT?: number } }): string {
  const ids = Object.entries(mirror.directions).map(([direction, id]) => `${direction}=${id}`).join(' ');
  return `${MIRROR_TEXT[mirror.mirror_type] ?? mirror.mirror_type} ${ids}`;
}

export function portDetail(port: Port): string {
  const profile = port['binding:profile'];
  return profile.netns ? `${profile.interface} @ ${profile.netns}` : profile.interface;
}

/** The status of each tap flow, tap mirror and tap service: the stream's when it has one (fresher), else the list's. */
function liveStatuses(stats: StatsReport | null): Map<string, { status: Status; reason: string | null }> {
  const live = new Map<string, { status: Status; reason: string | null }>();
  if (!stats) return live;
  for (const [kind, items] of [['tap_flow', stats.tap_flows], ['tap_mirror', stats.tap_mirrors], ['tap_service', stats.tap_services]] as const) {
    for (const item of items) live.set(`${kind}:${item.id}`, { status: item.status, reason: item.status_reason });
  }
  return live;
}

export function buildTopology(inventory: Inventory, stats: StatsReport | null): Topology {
  const live = liveStatuses(stats);
  const ports = new Map(inventory.ports.map((port) => [port.id, port]));
  const services = new Map(inventory.tap_services.map((service) => [service.id, service]));
  const nodes: TopologyNode[] = [];
  const edges: TopologyEdge[] = [];
  const keys = new Set<string>();
  const hostOfPort = (id: string) => ports.get(id)?.['binding:host_id'] ?? null;

  const add = (node: TopologyNode) => {
    const seen = live.get(node.key);
    if (seen) Object.assign(node, { status: seen.status, reason: seen.reason });
    nodes.push(node);
    keys.add(node.key);
  };
  /** A port a resource refers to that the caller cannot list (another project's): shown, but as unknown. */
  const ensurePort = (id: string, host: string | null) => {
    if (keys.has(`port:${id}`)) return;
    add({ key: `port:${id}`, kind: 'port', id, label: `port ${shortId(id)}`, detail: 'not visible to you', status: 'DOWN', reason: null, host });
  };

  for (const port of inventory.ports) {
    add({
      key: `port:${port.id}`, kind: 'port', id: port.id, label: nameOf(port), detail: portDetail(port),
      status: port.status, reason: port.status_reason, host: port['binding:host_id'],
    });
  }
  for (const service of inventory.tap_services) {
    const host = hostOfPort(service.port_id);
    add({
      key: `tap_service:${service.id}`, kind: 'tap_service', id: service.id, label: nameOf(service), detail: 'tap service',
      status: service.status, reason: service.status_reason, host,
    });
    ensurePort(service.port_id, host);
    edges.push({ from: `tap_service:${service.id}`, to: `port:${service.port_id}`, label: 'copies to', status: service.status });
  }
  for (const flow of inventory.tap_flows) {
    const host = hostOfPort(flow.source_port) ?? (services.has(flow.tap_service_id) ? hostOfPort(services.get(flow.tap_service_id)!.port_id) : null);
    add({
      key: `tap_flow:${flow.id}`, kind: 'tap_flow', id: flow.id, label: nameOf(flow),
      detail: `${DIRECTION_TEXT[flow.direction] ?? flow.direction}${flow.vlan_filter ? ` · VLAN ${flow.vlan_filter}` : ''}`,
      status: flow.status, reason: flow.status_reason, host,
    });
    ensurePort(flow.source_port, host);
    edges.push({ from: `port:${flow.source_port}`, to: `tap_flow:${flow.id}`, label: flow.direction, status: flow.status });
    if (services.has(flow.tap_service_id)) {
      edges.push({ from: `tap_flow:${flow.id}`, to: `tap_service:${flow.tap_service_id}`, label: '', status: flow.status });
    }
  }
  for (const mirror of inventory.tap_mirrors) {
    const host = hostOfPort(mirror.port_id);
    add({
      key: `tap_mirror:${mirror.id}`, kind: 'tap_mirror', id: mirror.id, label: nameOf(mirror), detail: tunnelText(mirror),
      status: mirror.status, reason: mirror.status_reason, host,
    });
    ensurePort(mirror.port_id, host);
    edges.push({ from: `port:${mirror.port_id}`, to: `tap_mirror:${mirror.id}`, label: Object.keys(mirror.directions).join('+'), status: mirror.status });
    const remote = `remote:${mirror.remote_ip}`;
    if (!keys.has(remote)) {
      add({ key: remote, kind: 'remote', label: mirror.remote_ip, detail: 'remote collector', status: 'REMOTE', reason: null, host: null });
    }
    edges.push({ from: `tap_mirror:${mirror.id}`, to: remote, label: MIRROR_TEXT[mirror.mirror_type] ?? mirror.mirror_type, status: mirror.status });
  }

  const hostNames = new Set<string>();
  for (const port of inventory.ports) hostNames.add(port['binding:host_id']);
  for (const agent of inventory.agents ?? []) hostNames.add(agent.host);
  const hosts = [...hostNames].sort().map((name) => {
    if (inventory.agents === null) return { name, agent: null };
    const agent = inventory.agents.find((candidate) => candidate.host === name);
    return { name, agent: agent === undefined ? 'none' as const : agent.alive ? 'alive' as const : 'dead' as const };
  });
  // Several hosts: each shows its agent, so that a host without one (or with a dead one) is seen at once.
  if (hosts.length > 1) {
    for (const host of hosts) {
      if (host.agent === null) continue;
      add({
        key: `agent:${host.name}`, kind: 'agent', label: host.name,
        detail: host.agent === 'alive' ? 'agent alive' : host.agent === 'dead' ? 'agent not reporting' : 'no agent',
        status: host.agent === 'alive' ? 'ACTIVE' : host.agent === 'dead' ? 'ERROR' : 'DOWN',
        reason: host.agent === 'none' ? `no agent on host ${host.name}` : host.agent === 'dead' ? `the agent of ${host.name} stopped reporting` : null,
        host: host.name,
      });
    }
  }
  return { nodes, edges, hosts };
}

export interface Placed<T> {
  item: T;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Layout {
  width: number;
  height: number;
  nodes: Map<string, Placed<TopologyNode>>;
  edges: Array<{ edge: TopologyEdge; points: Array<{ x: number; y: number }> }>;
  /** Host boxes (only when there are several hosts). */
  hosts: Array<Placed<{ name: string; agent: 'alive' | 'dead' | 'none' | null }>>;
}

export const NODE_WIDTH = 196;
export const NODE_HEIGHT = 46;
const REMOTE_WIDTH = 150;

/** A key for what the layout depends on: which nodes and edges there are (not their statuses). */
export function layoutKey(topology: Topology): string {
  return JSON.stringify([
    topology.nodes.map((node) => [node.key, node.host]),
    topology.edges.map((edge) => [edge.from, edge.to]),
    topology.hosts.map((host) => host.name),
  ]);
}

export function layoutTopology(topology: Topology): Layout {
  const clustered = topology.hosts.length > 1;
  const graph = new graphlib.Graph({ compound: clustered, multigraph: true });
  graph.setGraph({ rankdir: 'LR', nodesep: 26, ranksep: 64, edgesep: 12, marginx: 16, marginy: 28 });
  graph.setDefaultEdgeLabel(() => ({}));
  if (clustered) for (const host of topology.hosts) graph.setNode(`host:${host.name}`, { label: host.name, clusterLabelPos: 'top' });
  for (const node of topology.nodes) {
    graph.setNode(node.key, { width: node.kind === 'remote' ? REMOTE_WIDTH : NODE_WIDTH, height: NODE_HEIGHT });
    if (clustered && node.host !== null && graph.hasNode(`host:${node.host}`)) graph.setParent(node.key, `host:${node.host}`);
  }
  topology.edges.forEach((edge, index) => graph.setEdge(edge.from, edge.to, { weight: 1, minlen: 1 }, String(index)));
  layout(graph);

  const nodes = new Map<string, Placed<TopologyNode>>();
  for (const node of topology.nodes) {
    const placed = graph.node(node.key) as { x: number; y: number; width: number; height: number };
    nodes.set(node.key, { item: node, ...pick(placed) });
  }
  const edges = topology.edges.map((edge, index) => {
    const laid = graph.edge({ v: edge.from, w: edge.to, name: String(index) }) as { points?: Array<{ x: number; y: number }> } | undefined;
    return { edge, points: laid?.points ?? [] };
  });
  const hosts = clustered
    ? topology.hosts.flatMap((host) => {
      const placed = graph.node(`host:${host.name}`) as { x?: number; y?: number; width?: number; height?: number } | undefined;
      return placed?.x === undefined ? [] : [{ item: host, ...pick(placed as { x: number; y: number; width: number; height: number }) }];
    })
    : [];
  const { width = 0, height = 0 } = graph.graph() as { width?: number; height?: number };
  return { width, height, nodes, edges, hosts };
}

const pick = ({ x, y, width, height }: { x: number; y: number; width: number; height: number }) => ({ x, y, width, height });
