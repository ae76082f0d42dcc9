/**
 * Where cluster mode keeps things in etcd (docs/cluster.md):
 *
 *   PREFIX/v1/nodes/HOST/ports/ID              a port on HOST, or one HOST's resources refer to
 *   PREFIX/v1/nodes/HOST/tap_services/ID       a tap service, with the GRE key of the tunnel into it
 *   PREFIX/v1/nodes/HOST/tap_flows/ID
 *   PREFIX/v1/nodes/HOST/tap_mirrors/ID
 *   PREFIX/v1/nodes/HOST/hosts/PEER            PEER's underlay address, for HOST's tunnels to it
 *   PREFIX/v1/state/HOST/agent                 HOST's agent: registration, applied revision (leased)
 *   PREFIX/v1/state/HOST/observations/KIND/ID  what HOST's data path does of one resource (leased)
 *
 * The server writes nodes/ and reads state/; the agent of HOST reads only
 * nodes/HOST/ and writes only state/HOST/, which is what etcd roles can
 * grant. Host names are percent-encoded in keys (a '/' in a name cannot
 * reach into another host's prefix).
 */
import type { ResourceKind } from '../model/resources.js';

/** The collection segment of each resource kind under nodes/HOST/. */
export const SEGMENTS: Record<ResourceKind, string> = {
  port: 'ports',
  tap_service: 'tap_services',
  tap_flow: 'tap_flows',
  tap_mirror: 'tap_mirrors',
};
const KIND_OF_SEGMENT = new Map(Object.entries(SEGMENTS).map(([kind, segment]) => [segment, kind as ResourceKind]));
export const PEERS_SEGMENT = 'hosts';

export type NodeKey =
  | { host: string; kind: ResourceKind; id: string }
  | { host: string; peer: string };

export type StateKey =
  | { host: string; agent: true }
  | { host: string; kind: ResourceKind; id: string };

const encode = (name: string) => encodeURIComponent(name);
const decode = (text: string) => {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
};

export class Keyspace {
  /** '/tapas/v1/' for the prefix '/tapas'. */
  readonly root: string;

  constructor(prefix = '/tapas') {
    const trimmed = prefix.replace(/\/+$/, '');
    this.root = `${trimmed.startsWith('/') ? '' : '/'}${trimmed}/v1/`;
  }

  get nodes(): string {
    return `${this.root}nodes/`;
  }

  node(host: string): string {
    return `${this.nodes}${encode(host)}/`;
  }

  resource(host: string, kind: ResourceKind, id: string): string {
    return `${this.node(host)}${SEGMENTS[kind]}/${id}`;
  }

  peer(host: string, peer: string): string {
    return `${this.node(host)}${PEERS_SEGMENT}/${encode(peer)}`;
  }

  get state(): string {
    return `${this.root}state/`;
  }

  stateOf(host: string): string {
    return `${this.state}${encode(host)}/`;
  }

  agent(host: string): string {
    return `${this.stateOf(host)}agent`;
  }

  observation(host: string, kind: ResourceKind, id: string): string {
    return `${this.stateOf(host)}observations/${kind}/${id}`;
  }

  parseNode(key: string): NodeKey | undefined {
    if (!key.startsWith(this.nodes)) return undefined;
    const [hostText, segment, name, ...rest] = key.slice(this.nodes.length).split('/');
    const host = decode(hostText ?? '');
    if (host === undefined || segment === undefined || name === undefined || name === '' || rest.length > 0) return undefined;
    if (segment === PEERS_SEGMENT) {
      const peer = decode(name);
      return peer === undefined ? undefined : { host, peer };
    }
    const kind = KIND_OF_SEGMENT.get(segment);
    return kind === undefined ? undefined : { host, kind, id: name };
  }

  parseState(key: string): StateKey | undefined {
    if (!key.startsWith(this.state)) return undefined;
    const [hostText, what, kindText, id, ...rest] = key.slice(this.state.length).split('/');
    const host = decode(hostText ?? '');
    if (host === undefined || rest.length > 0) return undefined;
    if (what === 'agent' && kindText === undefined) return { host, agent: true };
    if (what !== 'observations' || id === undefined || id === '') return undefined;
    const kind = kindText as ResourceKind;
    return Object.hasOwn(SEGMENTS, kind) ? { host, kind, id } : undefined;
  }
}

/** The end of the key range of every key that starts with prefix (etcd's range_end). */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i -= 1) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
