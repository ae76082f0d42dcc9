/**
 * `tapas host list`: the hosts whose agents report to the daemon (GET
 * /v2.0/agents, as `openstack network agent list` reads it), with whether
 * each is alive, its last heartbeat and its underlay address.
 */
import type { Command } from 'commander';

import { clientFor } from './client.js';
import { addOutputOptions, formatMany, print, type Column, type OutputFlags } from './output.js';

interface AgentView {
  id: string;
  host: string;
  alive: boolean;
  heartbeat_timestamp: string;
  started_at: string;
  configurations?: { datapath?: string; underlay_ip?: string };
}

const COLUMNS: Column[] = [
  { attribute: 'host', heading: 'Host' },
  { attribute: 'alive', heading: 'Alive' },
  { attribute: 'underlay_ip', heading: 'Underlay IP' },
  { attribute: 'datapath', heading: 'Datapath' },
  { attribute: 'heartbeat_timestamp', heading: 'Last Heartbeat' },
  { attribute: 'started_at', heading: 'Started' },
  { attribute: 'id', heading: 'Agent ID' },
];

export function registerHosts(program: Command): void {
  const host = program.command('host').description('the compute hosts whose agents report to the daemon');
  const list = host
    .command('list')
    .configureHelp({ ...program.configureHelp(), showGlobalOptions: true })
    .description('list the hosts with an agent (GET /v2.0/agents; admin only): alive, last heartbeat, underlay address')
    .addHelpText('after', `
An agent is alive while it reports: in cluster mode, while its etcd lease lasts. A host that
ports name but that has no agent is not listed; its ports stay DOWN, "no agent on host NAME".`);
  addOutputOptions(list).action(async (flags: OutputFlags, command: Command) => {
    const body = await clientFor(command).request('GET', '/v2.0/agents') as { agents: AgentView[] };
    const rows = body.agents
      .map((agent) => ({
        ...agent,
        underlay_ip: agent.configurations?.underlay_ip ?? null,
        datapath: agent.configurations?.datapath ?? null,
      }))
      .sort((a, b) => a.host.localeCompare(b.host));
    print(formatMany(rows, COLUMNS, flags));
  });
}
