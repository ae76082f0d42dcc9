/** The live table: a row per tap flow, tap mirror (and each of its directions) and tap service, from the stats stream. */
import { Sparkline } from './charts.js';
import { bitRate, count, drops, nameOf, packetRate, totalDrops } from './format.js';
import type { RateHistory } from './history.js';
import type { Inventory, Rated, StatsReport } from './types.js';

interface Row {
  key: string;
  /** The selectable node (a direction's row selects its mirror). */
  node: string;
  kind: string;
  name: string;
  status: string;
  reason: string | null;
  what: string;
  rated: Rated;
  sub?: boolean;
}

function rowsOf(stats: StatsReport, inventory: Inventory): Row[] {
  const ports = new Map(inventory.ports.map((port) => [port.id, port]));
  const services = new Map(inventory.tap_services.map((service) => [service.id, service]));
  const rows: Row[] = [];
  for (const flow of stats.tap_flows) {
    rows.push({
      key: `tap_flow:${flow.id}`, node: `tap_flow:${flow.id}`, kind: 'tap flow', name: nameOf(flow), status: flow.status, reason: flow.status_reason,
      what: `${nameOf(ports.get(flow.source_port), 'port ?')} → ${nameOf(services.get(flow.tap_service_id), 'service ?')} · ${flow.direction}`,
      rated: flow,
    });
  }
  for (const mirror of stats.tap_mirrors) {
    rows.push({
      key: `tap_mirror:${mirror.id}`, node: `tap_mirror:${mirror.id}`, kind: 'tap mirror', name: nameOf(mirror), status: mirror.status, reason: mirror.status_reason,
      what: `${nameOf(ports.get(mirror.port_id), 'port ?')} → ${mirror.remote_ip} (${mirror.mirror_type})`, rated: mirror,
    });
    for (const [direction, rated] of Object.entries(mirror.directions)) {
      rows.push({
        key: `tap_mirror:${mirror.id}:${direction}`, node: `tap_mirror:${mirror.id}`, kind: '', name: `${direction} · tunnel id ${rated.tunnel_id}`,
        status: '', reason: null, what: '', rated, sub: true,
      });
    }
  }
  for (const service of stats.tap_services) {
    rows.push({
      key: `tap_service:${service.id}`, node: `tap_service:${service.id}`, kind: 'tap service', name: nameOf(service), status: service.status,
      reason: service.status_reason, what: `→ ${nameOf(ports.get(service.port_id), 'port ?')}`, rated: service,
    });
  }
  return rows;
}

export function RatesTable({ stats, inventory, history, selected, onSelect }: {
  stats: StatsReport | null;
  inventory: Inventory;
  history: RateHistory;
  selected: string | null;
  onSelect: (key: string) => void;
}) {
  if (!stats) return <p class="muted">Waiting for the stats stream…</p>;
  const rows = rowsOf(stats, inventory);
  if (rows.length === 0) return <p class="muted">No tap flows, tap mirrors or tap services yet.</p>;
  return (
    <table class="rates">
      <thead>
        <tr>
          <th>kind</th><th>name</th><th>status</th><th class="num">packets/s</th><th class="num">bits/s</th>
          <th class="num">packets</th><th>drops by cause</th><th class="num">drops/s</th><th>last minute</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((row) => {
          const latest = history.latest(row.key);
          const dps = latest.dps;
          const pps = row.rated.packets_per_second ?? latest.pps;
          const bps = row.rated.bits_per_second ?? latest.bps;
          const dropped = totalDrops(row.rated.drops);
          return (
            <tr key={row.key} data-row={row.key} class={`${row.sub ? 'sub' : ''}${selected === row.node ? ' selected' : ''}`} onClick={() => onSelect(row.node)}>
              <td class="kind">{row.kind}</td>
              <td class="name" title={row.what}>{row.name}<div class="what">{row.what}</div></td>
              <td>{row.status && <span class={`status status-${row.status}`} title={row.reason ?? ''}>{row.status}</span>}</td>
              <td class="num" data-col="pps" data-value={pps ?? ''}>{packetRate(pps)}</td>
              <td class="num" data-col="bps" data-value={bps ?? ''}>{bitRate(bps)}</td>
              <td class="num" data-col="packets">{count(row.rated.packets)}</td>
              <td class={dropped > 0 ? 'drops bad' : 'drops'} data-col="drops">{drops(row.rated.drops)}</td>
              <td class={dps ? 'num bad' : 'num'} data-col="dps">{packetRate(dps)}</td>
              <td><Sparkline series={history.get(row.key)} version={history.version} label={`packets per second of ${row.name}`} /></td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
