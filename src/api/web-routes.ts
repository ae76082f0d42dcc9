/**
 * The operator's web page (web/, built into dist/web by scripts/setup.sh),
 * served with the API from the same origin:
 *
 * - GET / answers a browser (Accept prefers text/html) with the page, and
 *   every other client (the OpenStack client sends Accept: application/json,
 *   curl any type) with the Neutron version document, as before;
 * - GET /web/FILE: the page's scripts, styles and icon, from an allow-list
 *   read once at start (nothing else of the file system is reachable);
 * - GET /web/session: who the caller is (project, roles, whether it may
 *   write), authenticated like the API, so the page knows whether to offer
 *   actions; `{"session": null}` when no token was sent and one is needed,
 *   so the page knows to ask for one.
 *
 * Every answer of the page carries a Content-Security-Policy that allows
 * scripts, styles, images and connections from this origin only, and no
 * inline script or style: a name with markup can only ever be text.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { canWrite, isAdmin, type RequestContext } from '../service/context.js';
import { Unauthorized, type Authenticate } from './auth.js';

/** Where setup.sh puts the built page: dist/web beside dist/api. */
export const DEFAULT_WEB_ROOT = fileURLToPath(new URL('../web/', import.meta.url));

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const PAGE_HEADERS = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'cache-control': 'no-cache',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json; charset=utf-8',
};

interface Asset {
  type: string;
  body: Buffer;
}

/** The built page's files by name (flat: index.html, app.js, app.css, favicon.svg), or undefined when it is not built. */
export function loadWebAssets(root: string): Map<string, Asset> | undefined {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return undefined;
  }
  const assets = new Map<string, Asset>();
  for (const name of names) {
    const type = TYPES[extname(name)];
    const path = join(root, name);
    if (type === undefined || !/^[A-Za-z0-9_.-]+$/.test(name) || !statSync(path).isFile()) continue;
    assets.set(name, { type, body: readFileSync(path) });
  }
  return assets.has('index.html') ? assets : undefined;
}

/** The q of a media type in an Accept header: the most specific range that names it exactly (0 when none does). */
function qualityOf(accept: string, type: string): number {
  let quality = 0;
  for (const range of accept.split(',')) {
    const [media, ...parameters] = range.split(';').map((part) => part.trim().toLowerCase());
    if (media !== type) continue;
    const q = parameters.find((parameter) => parameter.startsWith('q='));
    const value = q === undefined ? 1 : Number(q.slice(2));
    if (Number.isFinite(value)) quality = Math.max(quality, value);
  }
  return quality;
}

/** Whether a request to / asks for the page: it names text/html, and prefers it to application/json. */
export function prefersHtml(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  const html = qualityOf(accept, 'text/html');
  return html > 0 && html > qualityOf(accept, 'application/json');
}

export interface WebOptions {
  /** The built page; default dist/web. */
  root?: string;
  authenticate: Authenticate;
}

/**
 * Registers the page's routes, and returns the onRequest hook that GET /
 * (declared with the API) uses to answer browsers with the page.
 */
export function registerWebRoutes(app: FastifyInstance, options: WebOptions) {
  const assets = loadWebAssets(options.root ?? DEFAULT_WEB_ROOT);
  const send = (reply: FastifyReply, asset: Asset) => reply.headers(PAGE_HEADERS).type(asset.type).send(asset.body);

  if (assets) {
    app.get<{ Params: { file: string } }>('/web/:file', async (request, reply) => {
      const asset = request.params.file === 'index.html' ? undefined : assets.get(request.params.file);
      if (!asset) return reply.callNotFound();
      return send(reply, asset);
    });
  }

  // Not an authenticated route: a page that has no token yet learns that it needs one from a 200
  // (session null), not from a 401 the browser would log as a failed request. A token that is
  // sent and refused is still a 401.
  app.get('/web/session', async (request) => {
    const { authenticate } = options;
    const credentials = request.headers['x-auth-token'] !== undefined || request.headers.authorization !== undefined;
    let context: RequestContext;
    try {
      context = authenticate(request);
    } catch (error) {
      if (error instanceof Unauthorized && !credentials) return { session: null };
      throw error;
    }
    return { session: { project_id: context.projectId, roles: context.roles, admin: isAdmin(context), can_write: canWrite(context) } };
  });

  /** onRequest of GET /: a browser gets the page; the version document stays every other client's answer. */
  return async function pageForBrowsers(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    void reply.header('vary', 'Accept');
    if (assets && prefersHtml(request.headers.accept)) return send(reply, assets.get('index.html')!);
    return undefined;
  };
}
