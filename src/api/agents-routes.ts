/**
 * GET /v2.0/agents: the agents that report to this control plane, shaped as
 * Neutron shows its agents (`openstack network agent list`), one per host.
 * Admin only, as in Neutron's policy.
 */
import { createHash } from 'node:crypto';

import type { FastifyInstance } from 'fastify';

import { isAdmin, type RequestContext } from '../service/context.js';
import { NotFound, PolicyNotAuthorized } from '../service/errors.js';
import type { AgentRecord } from '../service/observations.js';

/** An agent that has not reported for this long is shown dead (Neutron's agent_down_time). */
export const AGENT_DOWN_AFTER_MS = 75_000;

/** A stable id per host, so that the same host keeps its agent id across restarts. */
function agentId(host: string): string {
  const hex = createHash('sha1').update(`tapas-agent:${host}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16)}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

function neutronTime(iso: string): string {
  // Neutron prints agent times as "YYYY-MM-DD HH:MM:SS".
  return iso.replace('T', ' ').replace(/Z$/, '');
}

function view(agent: AgentRecord, now: number) {
  return {
    id: agentId(agent.host),
    agent_type: 'TaaS agent',
    binary: 'tapas-agent',
    topic: 'taas',
    host: agent.host,
    admin_state_up: true,
    alive: now - Date.parse(agent.heartbeat_at) < AGENT_DOWN_AFTER_MS,
    availability_zone: null,
    description: null,
    started_at: neutronTime(agent.started_at),
    created_at: neutronTime(agent.started_at),
    heartbeat_timestamp: neutronTime(agent.heartbeat_at),
    configurations: {
      datapath: agent.datapath,
      ...(agent.underlay_ip ? { underlay_ip: agent.underlay_ip } : {}),
    },
    resources_synced: null,
  };
}

export function registerAgentRoutes(app: FastifyInstance, agents: () => AgentRecord[]): void {
  const config = { authenticated: true };
  const requireAdmin = (context: RequestContext) => {
    if (!isAdmin(context)) throw new PolicyNotAuthorized('rule:get_agent is disallowed by policy');
  };
  app.get('/v2.0/agents', { config }, async (request) => {
    requireAdmin(request.context);
    const now = Date.now();
    return { agents: agents().map((agent) => view(agent, now)) };
  });
  app.get<{ Params: { id: string } }>('/v2.0/agents/:id', { config }, async (request) => {
    requireAdmin(request.context);
    const agent = agents().find((candidate) => agentId(candidate.host) === request.params.id);
    if (!agent) throw new NotFound('AgentNotFound', `Agent ${request.params.id} could not be found.`);
    return { agent: view(agent, Date.now()) };
  });
}
