/** The selected resource: every attribute, its status and reason, what each host counts, its rates over time, and (for writers) delete. */
import type { ComponentChildren } from 'preact';

import { RateChart } from './charts.js';
import { bitRate, count, drops, nameOf, packetRate } from './format.js';
import type { RateHistory } from './history.js';
import { portDetail, tunnelText, type TopologyNode } from './topology.js';
import type { HostStats, Inventory, Kind, ResourceStats, StatsReport } from './types.js';
import { KIND_LABEL } from './types.js';

function Field({ label, children }: { label: string; children: ComponentChildren }) {
  return <><dt>{label}</dt><dd>{children}</dd></>;
}

function Link({ kind, id, inventory, onSelect }: { kind: Kind; id: string; inventory: Inventory; onSelect: (key: string) => void }) {
  const list = { port: inventory.ports, tap_service: inventory.tap_services, tap_flow: inventory.tap_flows, tap_mirror: inventory.tap_mirrors }[kind] as Array<{ id: string; name: string }>;
  const target = list.find((item) => item.id === id);
  if (!target) return <span class="mono">{id}</span>;
  return <button type="button" class="link" onClick={() => onSelect(`${kind}:${id}`)}>{nameOf(target)}</button>;
}

function HostTable({ hosts }: { hosts: HostStats[] }) {
  if (hosts.length === 0) return null;
  return (
    <table class="hosts">
      <thead><tr><th>host</th><th>status</th><th class="num">packets/s</th><th class="num">bits/s</th><th>drops</th></tr></thead>
      <tbody>
        {hosts.map((host) => (
          <tr>
            <td>{host.host}</td>
            <td><span class={`status status-${host.status}`}>{host.status}</span>{host.reason && <div class="reason small">{host.reason}</div>}</td>
            <td class="num">{packetRate(host.packets_per_second)}</td>
            <td class="num">{bitRate(host.bits_per_second)}</td>
            <td>{drops(host.drops)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function statsOf(stats: StatsReport | null, kind: NodeKindWithStats, id: string): ResourceStats | undefined {
  if (!stats) return undefined;
  const list = { tap_flow: stats.tap_flows, tap_mirror: stats.tap_mirrors, tap_service: stats.tap_services }[kind] as ResourceStats[];
  return list.find((item) => item.id === id);
}

type NodeKindWithStats = 'tap_flow' | 'tap_mirror' | 'tap_service';

export function Details({ node, inventory, stats, history, canWrite, onSelect, onDelete }: {
  node: TopologyNode | undefined;
  inventory: Inventory;
  stats: StatsReport | null;
  history: RateHistory;
  canWrite: boolean;
  onSelect: (key: string) => void;
  onDelete: (kind: Kind, id: string, name: string) => void;
}) {
  if (!node) {
    return (
      <section class="details empty" aria-label="details">
        <h2>Details</h2>
        <p class="muted">Select a port, tap service, tap flow or tap mirror in the topology or the table to see its attributes, its status and why, and its rates.</p>
        <Legend />
      </section>
    );
  }
  const link = (kind: Kind, id: string) => <Link kind={kind} id={id} inventory={inventory} onSelect={onSelect} />;
  const fields: ComponentChildren[] = [];
  let description = '';
  let deletable: Kind | null = null;
  let live: ResourceStats | undefined;

  if (node.kind === 'port') {
    const port = inventory.ports.find((item) => item.id === node.id);
    if (port) {
      description = port.description;
      fields.push(
        <Field label="interface">{portDetail(port)}</Field>,
        <Field label="host">{port['binding:host_id']}</Field>,
        <Field label="MAC address">{port.mac_address ?? '–'}</Field>,
        <Field label="used by">{usesOf(port.id, inventory, onSelect)}</Field>,
      );
    }
  } else if (node.kind === 'tap_service') {
    const service = inventory.tap_services.find((item) => item.id === node.id);
    if (service) {
      description = service.description;
      deletable = 'tap_service';
      const flows = inventory.tap_flows.filter((flow) => flow.tap_service_id === service.id);
      fields.push(
        <Field label="copies to port">{link('port', service.port_id)}</Field>,
        <Field label="tap flows">{flows.length === 0 ? 'none' : flows.map((flow) => <div>{link('tap_flow', flow.id)}</div>)}</Field>,
      );
      live = statsOf(stats, 'tap_service', service.id);
    }
  } else if (node.kind === 'tap_flow') {
    const flow = inventory.tap_flows.find((item) => item.id === node.id);
    if (flow) {
      description = flow.description;
      deletable = 'tap_flow';
      fields.push(
        <Field label="source port">{link('port', flow.source_port)}</Field>,
        <Field label="tap service">{link('tap_service', flow.tap_service_id)}</Field>,
        <Field label="direction">{flow.direction}</Field>,
        <Field label="VLAN filter">{flow.vlan_filter ?? 'none (every frame)'}</Field>,
      );
      live = statsOf(stats, 'tap_flow', flow.id);
    }
  } else if (node.kind === 'tap_mirror') {
    const mirror = inventory.tap_mirrors.find((item) => item.id === node.id);
    if (mirror) {
      description = mirror.description;
      deletable = 'tap_mirror';
      fields.push(
        <Field label="mirrored port">{link('port', mirror.port_id)}</Field>,
        <Field label="remote">{mirror.remote_ip}</Field>,
        <Field label="tunnel">{tunnelText(mirror)}</Field>,
      );
      live = statsOf(stats, 'tap_mirror', mirror.id);
    }
  } else if (node.kind === 'remote') {
    const mirrors = inventory.tap_mirrors.filter((mirror) => mirror.remote_ip === node.label);
    fields.push(<Field label="tap mirrors">{mirrors.map((mirror) => <div>{link('tap_mirror', mirror.id)} · {tunnelText(mirror)}</div>)}</Field>);
  } else if (node.kind === 'agent') {
    const agent = inventory.agents?.find((item) => item.host === node.label);
    fields.push(<Field label="host">{node.label}</Field>);
    if (agent) {
      fields.push(
        <Field label="alive">{agent.alive ? 'yes' : 'no'}</Field>,
        <Field label="last report">{agent.heartbeat_timestamp}</Field>,
        <Field label="data path">{agent.configurations.datapath ?? '–'}</Field>,
      );
    }
  }
  const resource = node.id ? [...inventory.ports, ...inventory.tap_services, ...inventory.tap_flows, ...inventory.tap_mirrors].find((item) => item.id === node.id) : undefined;
  const kindText = node.kind === 'remote' ? 'remote collector' : node.kind === 'agent' ? 'host agent' : KIND_LABEL[node.kind];

  return (
    <section class={`details status-${node.status}`} aria-label="details" data-selected={node.key}>
      <div class="details-kind">{kindText}</div>
      <h2 class="details-name">{node.label}</h2>
      {node.status !== 'REMOTE' && <div><span class={`status status-${node.status}`} data-field="status">{node.status}</span></div>}
      {node.reason && <p class="reason" data-field="status_reason">{node.reason}</p>}
      {description && <p class="description">{description}</p>}
      <dl>
        {node.id && <Field label="id"><span class="mono">{node.id}</span></Field>}
        {resource && <Field label="project">{resource.project_id}</Field>}
        {fields}
        {resource?.created_at && <Field label="created">{resource.created_at}</Field>}
      </dl>
      {live && (
        <div class="live">
          <div class="live-numbers">
            <div><span class="big">{packetRate(live.packets_per_second)}</span></div>
            <div><span class="big">{bitRate(live.bits_per_second)}</span></div>
            <div>{count(live.packets)} packets · drops: {drops(live.drops)}</div>
          </div>
          <RateChart key={node.key} series={history.get(node.key)} version={history.version} />
          <HostTable hosts={live.hosts} />
        </div>
      )}
      {canWrite && deletable && node.id && (
        <div class="actions">
          <button type="button" class="danger" data-action="delete" onClick={() => onDelete(deletable!, node.id!, node.label)}>Delete {KIND_LABEL[deletable]}</button>
        </div>
      )}
    </section>
  );
}

function usesOf(portId: string, inventory: Inventory, onSelect: (key: string) => void): ComponentChildren {
  const uses = [
    ...inventory.tap_services.filter((s) => s.port_id === portId).map((s) => ['tap_service', s] as const),
    ...inventory.tap_flows.filter((f) => f.source_port === portId).map((f) => ['tap_flow', f] as const),
    ...inventory.tap_mirrors.filter((m) => m.port_id === portId).map((m) => ['tap_mirror', m] as const),
  ];
  if (uses.length === 0) return 'nothing';
  return uses.map(([kind, item]) => (
    <div>{KIND_LABEL[kind]} <button type="button" class="link" onClick={() => onSelect(`${kind}:${item.id}`)}>{nameOf(item)}</button></div>
  ));
}

export function Legend() {
  return (
    <ul class="legend" aria-label="status colours">
      <li><span class="swatch status-ACTIVE" /> ACTIVE: mirroring runs</li>
      <li><span class="swatch status-DOWN" /> DOWN: not running yet, or down</li>
      <li><span class="swatch status-ERROR" /> ERROR: cannot run (reason on hover)</li>
      <li><span class="swatch status-PENDING_DELETE" /> PENDING_DELETE: being released</li>
    </ul>
  );
}
