/**
 * GET /v2.0/taas/stats: what the data paths counted per tap flow, tap mirror
 * and tap service (per host and in total, with rates), as JSON described by
 * the schema below. GET /v2.0/taas/stats/stream: the same report as
 * Server-Sent Events, one `stats` event per interval, for watchers.
 */
import type { FastifyInstance } from 'fastify';

import type { RequestContext } from '../service/context.js';
import { BadRequest } from '../service/errors.js';
import type { StatsReport, TaasStats } from '../service/stats.js';

const count = { type: ['integer', 'null'] };
const rate = { type: ['number', 'null'] };
const rated = {
  packets: count,
  bytes: count,
  drops: { type: 'object', additionalProperties: { type: 'integer' } },
  // Present when a filter, sample_rate or snaplen took something: not drops.
  selection: {
    type: 'object',
    properties: { filtered: { type: 'integer' }, sampled_out: { type: 'integer' }, truncated: { type: 'integer' } },
  },
  packets_per_second: rate,
  bits_per_second: rate,
  // Tap flows and tap mirrors: the data path that runs them, and why AF_PACKET's when the agent runs bpf.
  datapath: { type: 'string', enum: ['bpf', 'packet'] },
  datapath_reason: { type: 'string' },
};
const string = { type: 'string' };
const nullableString = { type: ['string', 'null'] };
const hostStats = {
  type: 'object',
  properties: { host: string, status: string, reason: nullableString, observed_at: string, ...rated },
};
const common = {
  id: string, name: string, project_id: string, status: string, status_reason: nullableString, ...rated,
  hosts: { type: 'array', items: hostStats },
};

export const statsReplySchema = {
  type: 'object',
  properties: {
    stats: {
      type: 'object',
      properties: {
        time: string,
        tap_flows: {
          type: 'array',
          items: { type: 'object', properties: { ...common, tap_service_id: string, source_port: string, direction: string } },
        },
        tap_mirrors: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              ...common, port_id: string, remote_ip: string, mirror_type: string,
              directions: { type: 'object', additionalProperties: { type: 'object', properties: { tunnel_id: { type: 'integer' }, ...rated } } },
            },
          },
        },
        tap_services: { type: 'array', items: { type: 'object', properties: { ...common, port_id: string } } },
      },
    },
  },
} as const;

const MIN_INTERVAL_S = 0.1;
const MAX_INTERVAL_S = 60;

function intervalOf(text: string | undefined): number {
  if (text === undefined) return 1;
  const seconds = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || seconds < MIN_INTERVAL_S || seconds > MAX_INTERVAL_S) {
    throw new BadRequest(`Invalid input for interval. Reason: '${text}' is not a number of seconds from ${MIN_INTERVAL_S} to ${MAX_INTERVAL_S}.`);
  }
  return seconds;
}

export function registerStatsRoutes(app: FastifyInstance, stats: TaasStats, errorReplies: Record<number, object>): void {
  const config = { authenticated: true };
  const open = new Set<() => void>();
  // preClose, not onClose: the server waits for its connections before onClose, and a stream never ends by itself.
  app.addHook('preClose', async () => {
    for (const end of open) end();
  });

  app.get('/v2.0/taas/stats', { config, schema: { response: { 200: statsReplySchema, ...errorReplies } } },
    async (request): Promise<{ stats: StatsReport }> => ({ stats: stats.report(request.context as RequestContext) }));

  app.get<{ Querystring: { interval?: string } }>('/v2.0/taas/stats/stream', { config }, async (request, reply) => {
    const intervalMs = intervalOf(request.query.interval) * 1000;
    const context = request.context as RequestContext;
    reply.hijack();
    const stream = reply.raw;
    stream.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    let timer: NodeJS.Timeout | undefined;
    const end = () => {
      clearInterval(timer);
      open.delete(end);
      stream.end();
    };
    const send = () => {
      // A watcher that does not read is skipped, not buffered for.
      if (stream.writableNeedDrain) return;
      try {
        stream.write(`event: stats\ndata: ${JSON.stringify({ stats: stats.report(context) })}\n\n`);
      } catch (error) {
        // Runs on a timer: an error here must end this stream, never the daemon.
        request.log.error({ err: error }, 'stats stream failed');
        end();
      }
    };
    open.add(end);
    request.raw.on('close', end);
    send();
    timer = setInterval(send, intervalMs);
  });
}
