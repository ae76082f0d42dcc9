/**
 * Who a request acts for. Two modes:
 * - noauth: one operator on this host; every request is admin, its project
 *   taken from X-Project-Id (else "default"; a create may name another in
 *   its body). Loopback only.
 * - token: static tokens from a JSON file, each mapping to a project and
 *   roles; the client sends one in X-Auth-Token, as Keystone clients do.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

import type { FastifyRequest } from 'fastify';

import { ROLES, type RequestContext, type Role } from '../service/context.js';
import { BadRequest, NeutronError } from '../service/errors.js';

export type AuthMode = 'noauth' | 'token';

export const NOAUTH_DEFAULT_PROJECT = 'default';

/** The longest project id a body may give (the contract's project_id), so also the longest a header may. */
const MAX_PROJECT_ID_LENGTH = 255;

export class TokensFileError extends Error {}

interface TokenEntry {
  project_id: string;
  roles: Role[];
}

export class Unauthorized extends NeutronError {
  constructor() {
    super(401, 'HTTPUnauthorized', 'Authentication required: send a valid token in X-Auth-Token');
  }
}

// Tokens are kept as digests: looking one up hashes what the client sent, so
// the comparison never runs over the secret itself character by character.
const digest = (token: string) => createHash('sha256').update(token).digest('hex');

/**
 * Reads a tokens file:
 * `{"tokens": [{"token": "…", "project_id": "alpha", "roles": ["member"]}, …]}`.
 */
export function loadTokens(path: string): Map<string, TokenEntry> {
  let document: unknown;
  try {
    document = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new TokensFileError(`cannot read the tokens file ${path}: ${(error as Error).message}`);
  }
  const entries = (document as { tokens?: unknown })?.tokens;
  if (!Array.isArray(entries) || entries.length === 0) {
    throw new TokensFileError(`${path}: expected {"tokens": [{"token", "project_id", "roles"}, ...]} with at least one token`);
  }
  const tokens = new Map<string, TokenEntry>();
  entries.forEach((entry: unknown, index) => {
    const { token, project_id: projectId, roles } = (entry ?? {}) as Record<string, unknown>;
    const where = `${path}: tokens[${index}]`;
    if (typeof token !== 'string' || token.length < 8) throw new TokensFileError(`${where}: "token" must be a string of at least 8 characters`);
    if (typeof projectId !== 'string' || projectId === '') throw new TokensFileError(`${where}: "project_id" must be a non-empty string`);
    if (!Array.isArray(roles) || roles.length === 0 || !roles.every((role) => (ROLES as readonly unknown[]).includes(role))) {
      throw new TokensFileError(`${where}: "roles" must be a non-empty list of ${ROLES.join(', ')}`);
    }
    const key = digest(token);
    if (tokens.has(key)) throw new TokensFileError(`${where}: the same token appears twice`);
    tokens.set(key, { project_id: projectId, roles: roles as Role[] });
  });
  return tokens;
}

/** Whether other users of the host can read the tokens file (worth a warning). */
export function tokensFileIsShared(path: string): boolean {
  return (statSync(path).mode & 0o077) !== 0;
}

export type Authenticate = (request: FastifyRequest) => RequestContext;

export function noauth(): Authenticate {
  return (request) => {
    const header = request.headers['x-project-id'] ?? request.headers['x-tenant-id'];
    // An admin may also name another project in a create's body (the service honours it).
    const projectId = typeof header === 'string' && header !== '' ? header : NOAUTH_DEFAULT_PROJECT;
    // As long as a project_id in a body may be: resources are stamped with it.
    if (projectId.length > MAX_PROJECT_ID_LENGTH) {
      throw new BadRequest(`Invalid input for X-Project-Id. Reason: a project id has at most ${MAX_PROJECT_ID_LENGTH} characters, not ${projectId.length}.`);
    }
    return { projectId, roles: ['admin'] };
  };
}

export function tokenAuth(tokens: Map<string, TokenEntry>): Authenticate {
  return (request) => {
    let token = request.headers['x-auth-token'];
    const authorization = request.headers.authorization;
    if (token === undefined && typeof authorization === 'string' && authorization.startsWith('Bearer ')) {
      token = authorization.slice('Bearer '.length);
    }
    const entry = typeof token === 'string' ? tokens.get(digest(token)) : undefined;
    if (!entry) throw new Unauthorized();
    return { projectId: entry.project_id, roles: entry.roles };
  };
}

