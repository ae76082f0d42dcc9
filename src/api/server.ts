/**
 * The HTTP API: Neutron's URLs, bodies, status codes and errors for ports,
 * tap services, tap flows and tap mirrors (plus quotas, versions and
 * extensions), and /metrics. Routes parse and authenticate, the service
 * decides, views shape the answer.
 */
import Fastify, {
  LogController,
  type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest,
} from 'fastify';
import type { Logger } from 'pino';

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import ajvFormats from 'ajv-formats';

import { compileFilter } from '../engine/engine.js';
import { useFilterCompiler } from '../model/formats.js';
import { CONTRACT, inputFromBody, RESOURCE_KINDS, type ResourceKind } from '../model/contract.js';
import type { RequestContext } from '../service/context.js';
import type { AgentRecord } from '../service/observations.js';
import type { TaasStats } from '../service/stats.js';
import type { TaasService } from '../service/taas-service.js';
import { storageFailure } from '../store/storage-errors.js';
import type { Authenticate } from './auth.js';
import { classify, errorBody, sendError, type RouteMeta } from './errors.js';
import {
  answerServerLevelRequests, clientErrorHandler, frameworkErrors, installJsonParser, loopbackGuard, requireHost, stripJsonSuffix,
} from './http-guards.js';
import type { Metrics } from './metrics.js';
import {
  contractFormats, createBodySchema, itemReplySchema, listReplySchema, neutronErrorSchema, updateBodySchema,
} from './schemas.js';
import { registerAgentRoutes } from './agents-routes.js';
import { registerStatsRoutes } from './stats-routes.js';
import { registerWebRoutes } from './web-routes.js';
import { queryViews, selectFields, toView, type Query } from './views.js';

export interface ApiOptions {
  service: TaasService;
  stats: TaasStats;
  /** The agents reporting to this control plane. */
  agents: () => AgentRecord[];
  authenticate: Authenticate;
  metrics: Metrics;
  logger: Logger;
  /** Whether /metrics needs a token too (token mode: it names every project's resources). */
  metricsNeedAuth: boolean;
  bodyLimit?: number;
  /** How long a DELETE waits for the hosts to release what it removes before answering 204 anyway (PENDING_DELETE). */
  deleteWaitMs?: number;
  /**
   * noauth: serve only requests addressed to a loopback name or to this listen
   * address, and none from another origin's web page (DNS rebinding, CSRF).
   */
  loopbackOnly?: { listenHost: string };
  /** Where the operator's web page is built (default dist/web); served at / to browsers. */
  webRoot?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    context: RequestContext;
  }
}

// ajv-formats declares its own options type; fastify's plugin list takes plugins of any options.
const standardFormats = ajvFormats.default as unknown as typeof contractFormats;

const COLLECTIONS: ReadonlyArray<{ kind: ResourceKind; paths: readonly string[] }> = RESOURCE_KINDS.map((kind) => ({ kind, paths: CONTRACT[kind].paths }));

export const EXTENSIONS = [
  { alias: 'taas', name: 'Neutron Tap as a Service', description: 'Neutron Tap as a Service Extension.', updated: '2015-01-14T10:00:00-00:00' },
  { alias: 'taas-vlan-filter', name: 'VLAN filtering for Neutron Tap as a Service', description: 'Neutron Tap as a Service Extension for filtering VLANs.', updated: '2019-01-14T00:00:00-00:00' },
  { alias: 'tap-mirror', name: 'Tap as a Service GRE or ERSPAN mirror', description: 'Neutron Tap as a Service extension for GRE or ERSPAN mirroring.', updated: '2023-05-05T11:45:00-00:00' },
  // Upstream TaaS's name for directions {"BOTH": N} on tap mirrors (neutron-lib's tap_mirror_both_direction).
  { alias: 'tap-mirror-both-direction', name: 'Tap as a Service mirror with BOTH direction support', description: 'Neutron Tap as a Service extension mirroring with support for BOTH direction.', updated: '2025-12-15T11:45:00-00:00' },
  { alias: 'tapas-mirror-types', name: 'ERSPAN type III and VXLAN tap mirrors', description: 'Tap mirrors of mirror_type erspanv2 (ERSPAN type III, direction bit per frame) and vxlan (VNI = the tunnel id, udp_port).', updated: '2026-12-04T00:00:00-00:00' },
  // tapas's selection of what is sent, on tap flows and tap mirrors (a TaaS client ignores them).
  { alias: 'tapas-filter', name: 'Packet filters', description: 'Tap flows and tap mirrors take filter: a pcap-filter expression (tcpdump syntax), compiled by libpcap; a bad one is refused with libpcap\'s message.', updated: '2026-12-04T00:00:00-00:00' },
  { alias: 'tapas-snaplen', name: 'Truncation', description: 'Tap flows and tap mirrors take snaplen: only the first N bytes (64 or more) of each frame are sent; ERSPAN sets its T bit.', updated: '2026-12-04T00:00:00-00:00' },
  { alias: 'tapas-sampling', name: 'Sampling', description: 'Tap flows and tap mirrors take sample_rate: one frame in N is sent, per tap flow or mirror; the rest are counted as sampled out.', updated: '2026-12-04T00:00:00-00:00' },
  { alias: 'quotas', name: 'Quota management support', description: 'Expose functions for quotas management per project', updated: '2012-07-29T10:00:00-00:00' },
  { alias: 'agent', name: 'agent', description: 'The agent management extension.', updated: '2013-02-03T10:00:00-00:00' },
  { alias: 'binding', name: 'Port Binding', description: 'Expose port bindings of a virtual port to external application', updated: '2014-02-03T10:00:00-00:00' },
  { alias: 'tapas-status-reason', name: 'Status reasons', description: 'Every resource carries status_reason: why it is in ERROR (or DOWN), null otherwise.', updated: '2026-01-01T00:00:00-00:00' },
].map((extension) => ({ ...extension, links: [] }));

const DEFAULT_BODY_LIMIT = 64 * 1024;

/** A whole list's reply body, by the (shared, frozen) list the service handed out. */
const LIST_BODIES = new WeakMap<object, Buffer>();

export function buildApi(options: ApiOptions): FastifyInstance {
  const { service, metrics } = options;
  // A tap flow's or tap mirror's filter is compiled by libpcap, as the engine will, before it is stored.
  useFilterCompiler(compileFilter);
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    // One structured line per request comes from the onResponse hook instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    // Draining on SIGTERM: a request already on an open connection is answered (then the
    // connection closes), not turned away with a 503 the client cannot tell from a failure.
    return503OnClosing: false,
    // Clients of the Neutron v2 API may still ask for "/ports.json".
    rewriteUrl: (request) => stripJsonSuffix(request.url ?? '/'),
    // A request without Host reaches the hooks, which answer it in the Neutron format.
    http: { requireHostHeader: false },
    frameworkErrors,
    clientErrorHandler,
    ajv: {
      customOptions: {
        // Unknown attributes are an error (400), never silently dropped; types are not coerced.
        removeAdditional: false,
        coerceTypes: false,
        useDefaults: false,
        allErrors: false,
        verbose: true,
      },
      // The contract's formats (UUIDs, interface names, netns, IP addresses, VLAN filters, tunnel ids) after the standard ones.
      plugins: [standardFormats, contractFormats],
    },
  });

  // Only JSON bodies: anything else is 415, not parsed text.
  app.removeContentTypeParser('text/plain');
  installJsonParser(app);
  answerServerLevelRequests(app.server);
  app.decorateRequest('context', undefined as unknown as RequestContext);

  // Before anything else: who may talk to the API at all.
  app.addHook('onRequest', requireHost);
  if (options.loopbackOnly) app.addHook('onRequest', loopbackGuard(options.loopbackOnly.listenHost));
  app.addHook('onRequest', async (request) => {
    const authenticated = (request.routeOptions.config as { authenticated?: boolean } | undefined)?.authenticated;
    if (authenticated) request.context = options.authenticate(request);
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) });
    request.log.info({ method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    let answer: ReturnType<typeof classify>;
    try {
      // A full or failing disk is the host's trouble, not a bug: 507 or 503, saying so.
      answer = storageFailure(error) ?? classify(error, request);
    } catch (failure) {
      // Describing the error failed too: still a Neutron error, never fastify's own body.
      request.log.error({ err: failure }, 'classifying an error failed');
      answer = { status: 500, type: 'HTTPInternalServerError', message: 'Request failed: internal server error while processing your request.' };
    }
    const { status, type, message } = answer;
    if (status >= 500) request.log.error({ err: error, status }, 'request failed');
    return sendError(reply, status, type, message);
  });
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, 'HTTPNotFound', `The resource could not be found: ${request.method} ${request.url.split('?')[0]}`));

  const replyErrors = { 400: neutronErrorSchema, 401: neutronErrorSchema, 403: neutronErrorSchema, 404: neutronErrorSchema, 409: neutronErrorSchema };
  const authenticated = { authenticated: true };

  // A browser asking for / gets the operator's page; every other client the version document.
  const pageForBrowsers = registerWebRoutes(app, { authenticate: options.authenticate, ...(options.webRoot ? { root: options.webRoot } : {}) });
  app.get('/', { onRequest: pageForBrowsers }, async (request) => ({
    versions: [{ id: 'v2.0', status: 'CURRENT', links: [{ href: `${baseUrl(request)}/v2.0/`, rel: 'self' }] }],
  }));
  app.get('/v2.0', { config: authenticated }, async (request) => ({
    resources: COLLECTIONS.map(({ kind, paths }) => ({
      name: kind, collection: `${kind}s`, links: [{ href: `${baseUrl(request)}${paths[0]}`, rel: 'self' }],
    })),
  }));
  app.get('/v2.0/extensions', { config: authenticated }, async () => ({ extensions: EXTENSIONS }));
  app.get<{ Params: { alias: string } }>('/v2.0/extensions/:alias', { config: authenticated }, async (request, reply) => {
    const extension = EXTENSIONS.find((e) => e.alias === request.params.alias);
    if (!extension) return sendError(reply, 404, 'ExtensionNotFound', `Extension with alias ${request.params.alias} does not exist`);
    return { extension };
  });

  for (const { kind, paths } of COLLECTIONS) {
    const plural = `${kind}s`;
    for (const path of paths) {
      app.get<{ Querystring: Query }>(path, {
        config: authenticated,
        schema: { response: { 200: listReplySchema(kind), ...replyErrors } },
      }, async (request, reply) => {
        const shown = service.list(kind, request.context);
        // The whole list, as asked again and again (dashboards, agents' pollers): serialized once
        // for as long as the service hands out the same list (nothing in it changed).
        if (Object.keys(request.query).length === 0) {
          let body = LIST_BODIES.get(shown);
          if (!body) {
            body = Buffer.from(reply.serialize({ [plural]: shown.map((resource) => toView(kind, resource)) }) as string);
            LIST_BODIES.set(shown, body);
          }
          return reply.type('application/json; charset=utf-8').send(body);
        }
        const views = shown.map((resource) => toView(kind, resource));
        const page = queryViews(kind, views, request.query);
        if (page.nextMarker === undefined) return { [plural]: page.items };
        const next = new URL(`${baseUrl(request)}${request.url}`);
        next.searchParams.set('marker', page.nextMarker);
        return { [plural]: page.items, [`${plural}_links`]: [{ rel: 'next', href: next.toString() }] };
      });

      app.withTypeProvider<TypeBoxTypeProvider>().post(path, {
        config: { ...authenticated, kind, action: 'create' } satisfies RouteMeta & object,
        schema: { body: createBodySchema(kind), response: { 201: itemReplySchema(kind), ...replyErrors } },
      }, async (request, reply) => {
        const created = create(service, kind, request.context, request.body[kind] as Record<string, unknown>);
        return reply.code(201).send({ [kind]: toView(kind, created) });
      });

      app.get<{ Params: { id: string }; Querystring: Query }>(`${path}/:id`, {
        config: authenticated,
        schema: { response: { 200: itemReplySchema(kind), ...replyErrors } },
      }, async (request) => {
        const view = toView(kind, service.get(kind, request.context, request.params.id));
        const fields = fieldsOf(request.query);
        return { [kind]: fields.length > 0 ? selectFields(view, fields) : view };
      });

      app.put<{ Params: { id: string }; Body: Record<string, Record<string, unknown>> }>(`${path}/:id`, {
        config: { ...authenticated, kind, action: 'update' },
        schema: { body: updateBodySchema(kind), response: { 200: itemReplySchema(kind), ...replyErrors } },
      }, async (request) => {
        // Attribute names to record fields (a tap flow's filter is stored as packet_filter).
        const changes = inputFromBody(kind, request.body[kind]!) as Record<string, unknown>;
        const updated = service.update(kind, request.context, request.params.id, changes);
        return { [kind]: toView(kind, updated) };
      });

      app.delete<{ Params: { id: string } }>(`${path}/:id`, { config: authenticated }, async (request, reply) => {
        const outcome = service.delete(kind, request.context, request.params.id);
        // The row stays PENDING_DELETE until every host let go of it: give them a moment so
        // that, usually, the answer comes once it is really gone.
        if (outcome.pending) await service.waitUntilGone(kind, request.params.id, options.deleteWaitMs ?? 5000);
        return reply.code(204).send();
      });

      methodNotAllowed(app, path, ['PUT', 'DELETE', 'PATCH']);
      methodNotAllowed(app, `${path}/:id`, ['POST', 'PATCH']);
    }
  }

  registerStatsRoutes(app, options.stats, replyErrors);
  registerAgentRoutes(app, options.agents);

  app.get('/v2.0/quotas', { config: authenticated }, async (request) => ({
    quotas: service.quotaProjects(request.context).map(({ project_id: projectId, limits }) => ({ project_id: projectId, tenant_id: projectId, ...limits })),
  }));
  app.get<{ Params: { project: string } }>('/v2.0/quotas/:project', { config: authenticated }, async (request) => ({
    quota: service.quotaLimits(request.context, request.params.project),
  }));
  app.put<{ Params: { project: string }; Body: { quota: Record<string, unknown> } }>('/v2.0/quotas/:project', {
    config: { ...authenticated, action: 'update' },
    schema: { body: { type: 'object', required: ['quota'], additionalProperties: false, properties: { quota: { type: 'object' } } } },
  }, async (request) => ({
    quota: service.setQuotaLimits(request.context, request.params.project, request.body.quota),
  }));
  app.delete<{ Params: { project: string } }>('/v2.0/quotas/:project', { config: authenticated }, async (request, reply) => {
    service.resetQuotaLimits(request.context, request.params.project);
    return reply.code(204).send();
  });

  app.get('/metrics', { config: { authenticated: options.metricsNeedAuth } }, async (request, reply) => {
    if (options.metricsNeedAuth && !request.context.roles.includes('admin')) {
      return sendError(reply, 403, 'PolicyNotAuthorized', 'rule:get_metrics is disallowed by policy (admin only)');
    }
    return reply.type(metrics.registry.contentType).send(await metrics.render());
  });

  return app;
}

/** A create body, its attributes turned into record fields by the contract, to the service. */
function create(service: TaasService, kind: ResourceKind, context: RequestContext, body: Record<string, unknown>) {
  const input = inputFromBody(kind, body) as never;
  switch (kind) {
    case 'port':
      return service.createPort(context, input);
    case 'tap_service':
      return service.createTapService(context, input);
    case 'tap_flow':
      return service.createTapFlow(context, input);
    case 'tap_mirror':
      return service.createTapMirror(context, input);
  }
}

function fieldsOf(query: Query): string[] {
  const value = query.fields;
  const values = value === undefined ? [] : Array.isArray(value) ? value : [value];
  return values.flatMap((text) => text.split(',')).filter((field) => field !== '');
}

function methodNotAllowed(app: FastifyInstance, path: string, methods: Array<'PUT' | 'DELETE' | 'POST' | 'PATCH'>): void {
  app.route({
    method: methods,
    url: path,
    handler: async (request: FastifyRequest, reply: FastifyReply) =>
      reply.code(405).header('allow', path.endsWith('/:id') ? 'GET, PUT, DELETE' : 'GET, POST')
        .send(errorBody('HTTPMethodNotAllowed', `The method ${request.method} is not allowed for this resource.`)),
  });
}

function baseUrl(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}`;
}
