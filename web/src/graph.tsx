/**
 * The topology, drawn as SVG from the layout: one box per resource, coloured
 * by status, the status reason on hover (and in the details on selection).
 * Every name is an SVG text node's text: markup in a name stays text.
 */
import { useRef, useState } from 'preact/hooks';

import type { Layout, TopologyNode } from './topology.js';
import { KIND_LABEL } from './types.js';

const KIND_TEXT: Record<TopologyNode['kind'], string> = { ...KIND_LABEL, remote: 'remote', agent: 'host agent' };

/** A small topology is not blown up past this scale (a large one shrinks to fit). */
const MAX_SCALE = 1.3;

/** At most n characters, with an ellipsis: the full text is in the tooltip and the details. */
const fit = (text: string, n: number) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

interface Hover {
  node: TopologyNode;
  x: number;
  y: number;
}

export function TopologyGraph({ layout, selected, onSelect }: {
  layout: Layout;
  selected: string | null;
  onSelect: (key: string | null) => void;
}) {
  const [hover, setHover] = useState<Hover | null>(null);
  const box = useRef<HTMLDivElement>(null);
  const width = Math.max(layout.width, 200);
  const height = Math.max(layout.height, 120);

  const track = (node: TopologyNode) => (event: MouseEvent) => {
    const bounds = box.current!.getBoundingClientRect();
    setHover({ node, x: event.clientX - bounds.left, y: event.clientY - bounds.top });
  };

  return (
    <div class="graph" ref={box} onMouseLeave={() => setHover(null)}>
      <svg viewBox={`0 0 ${width} ${height}`} preserveAspectRatio="xMidYMid meet" role="group" aria-label="topology"
        style={{ maxWidth: `${Math.round(width * MAX_SCALE)}px`, maxHeight: `${Math.round(height * MAX_SCALE)}px` }}
        onClick={(event) => { if (event.target === event.currentTarget) onSelect(null); }}>
        <defs>
          {['ACTIVE', 'DOWN', 'ERROR', 'PENDING_DELETE', 'REMOTE'].map((status) => (
            <marker id={`arrow-${status}`} class={`arrow status-${status}`} viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
              <path d="M 0 0 L 10 5 L 0 10 z" />
            </marker>
          ))}
        </defs>
        {layout.hosts.map((host) => (
          <g class={`host agent-${host.item.agent ?? 'unknown'}`} data-host={host.item.name}>
            <rect x={host.x - host.width / 2} y={host.y - host.height / 2} width={host.width} height={host.height} rx="10" />
            <text x={host.x - host.width / 2 + 10} y={host.y - host.height / 2 - 7}>host {fit(host.item.name, 40)}</text>
          </g>
        ))}
        {layout.edges.map(({ edge, points }) => {
          if (points.length < 2) return null;
          const d = `M ${points.map((p) => `${p.x} ${p.y}`).join(' L ')}`;
          const middle = points[Math.floor(points.length / 2)]!;
          return (
            <g class={`edge status-${edge.status}`} data-edge={`${edge.from}>${edge.to}`}>
              <path d={d} marker-end={`url(#arrow-${edge.status})`} />
              {edge.label && <text x={middle.x} y={middle.y - 5} text-anchor="middle">{edge.label}</text>}
            </g>
          );
        })}
        {[...layout.nodes.values()].map(({ item: node, x, y, width: w, height: h }) => (
          <g
            class={`node kind-${node.kind} status-${node.status}${selected === node.key ? ' selected' : ''}`}
            data-node={node.key}
            data-status={node.status}
            transform={`translate(${x - w / 2} ${y - h / 2})`}
            tabIndex={0}
            role="button"
            aria-label={`${KIND_TEXT[node.kind]} ${node.label}: ${node.status}${node.reason ? ` (${node.reason})` : ''}`}
            onClick={() => onSelect(node.key)}
            onKeyDown={(event) => { if (event.key === 'Enter' || event.key === ' ') onSelect(node.key); }}
            onMouseEnter={track(node)}
            onMouseMove={track(node)}
          >
            <rect width={w} height={h} rx="7" />
            <rect class="stripe" width="5" height={h} rx="2" />
            <text class="kind" x="13" y="14">{KIND_TEXT[node.kind]}</text>
            <text class="label" x="13" y="29">{fit(node.label, Math.floor((w - 20) / 7.4))}</text>
            <text class="detail" x="13" y="41">{fit(node.detail, Math.floor((w - 20) / 6))}</text>
            {node.status === 'ERROR' && <text class="badge" x={w - 10} y="15" text-anchor="end">!</text>}
          </g>
        ))}
      </svg>
      {hover && (
        <div class={`tooltip status-${hover.node.status}`} role="tooltip" style={{ left: `${hover.x + 14}px`, top: `${hover.y + 14}px` }}>
          <div class="tooltip-kind">{KIND_TEXT[hover.node.kind]}</div>
          <div class="tooltip-name">{hover.node.label}</div>
          <div class="tooltip-status">{hover.node.status === 'REMOTE' ? hover.node.detail : hover.node.status}</div>
          {hover.node.reason && <div class="tooltip-reason">{hover.node.reason}</div>}
        </div>
      )}
    </div>
  );
}
