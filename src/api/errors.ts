/**
 * Every failure leaves the API as a Neutron error:
 * `{"NeutronError": {"type", "message", "detail"}}`. Schema failures are
 * reworded the way Neutron words them, so clients that match on messages
 * (and people who read them) see what they would see from Neutron.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';

import { attributeOf, type ResourceKind } from '../model/contract.js';
import { attributePath, formatReason, invalidInputMessage, showValue as show } from '../model/formats.js';
import { NeutronError } from '../service/errors.js';

export interface NeutronErrorBody {
  NeutronError: { type: string; message: string; detail: string };
}

export function errorBody(type: string, message: string): NeutronErrorBody {
  return { NeutronError: { type, message, detail: '' } };
}

/** What a route tells the error handler about itself. */
export interface RouteMeta {
  kind?: ResourceKind;
  action?: 'create' | 'update';
}

interface SchemaError {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  data?: unknown;
  message?: string;
  /** The schema holding the failed keyword (ajv's `verbose`). */
  parentSchema?: { properties?: Record<string, unknown> };
}

/** Neutron's wording for the first schema failure of a request body. */
export function describeSchemaError(error: SchemaError, meta: RouteMeta): string {
  const kind = meta.kind ?? 'resource';
  const path = error.instancePath.split('/').slice(1).map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (path.length === 0) {
    if (error.keyword === 'required') {
      const body = error.data as Record<string, unknown> | undefined;
      if (body && `${kind}s` in body) return 'Bulk operations are not supported: send one resource per request';
      return `Unable to find '${kind}' in request body`;
    }
    if (error.keyword === 'additionalProperties') {
      const extra = String(error.params.additionalProperty);
      if (extra === `${kind}s`) return 'Bulk operations are not supported: send one resource per request';
      return `Unrecognized attribute(s) '${extra}'`;
    }
    return 'Body contains invalid data: expected a JSON object';
  }
  if (path.length === 1) {
    if (error.keyword === 'required') return `Failed to parse request. Required attribute '${String(error.params.missingProperty)}' not specified`;
    if (error.keyword === 'additionalProperties') {
      const extra = String(error.params.additionalProperty);
      const known = meta.kind ? attributeOf(meta.kind, extra) !== undefined : false;
      if (!known) return `Unrecognized attribute(s) '${extra}'`;
      return meta.action === 'update' ? `Cannot update read-only attribute ${extra}` : `Attribute '${extra}' not allowed in POST`;
    }
    return `Body contains invalid data: '${kind}' must be a JSON object`;
  }
  const attribute = path[1]!;
  const value = error.data;
  let reason: string;
  switch (error.keyword) {
    case 'type':
      reason = `${show(value)} is not a valid ${String(error.params.type).replace(',', ' or ')}`;
      break;
    case 'enum':
      reason = `${show(value)} is not in [${(error.params.allowedValues as unknown[]).map(show).join(', ')}]`;
      break;
    case 'const':
      reason = `${show(value)} is not supported (only ${show(error.params.allowedValue)})`;
      break;
    case 'format':
      reason = formatReason(String(error.params.format), value) ?? `${show(value)} is not a valid ${String(error.params.format)}`;
      break;
    case 'maxLength':
      reason = `${show(value)} exceeds maximum length of ${String(error.params.limit)}`;
      break;
    case 'additionalProperties': {
      const known = Object.keys(error.parentSchema?.properties ?? {});
      reason = `unrecognized key '${String(error.params.additionalProperty)}'${known.length > 0 ? ` (known: ${known.join(', ')})` : ''}`;
      break;
    }
    case 'required':
      reason = `required key '${String(error.params.missingProperty)}' is missing`;
      break;
    case 'minProperties':
      reason = 'must not be empty';
      break;
    case 'maxProperties':
      reason = `has more than ${String(error.params.limit)} keys`;
      break;
    default:
      reason = error.message ?? 'invalid value';
  }
  return invalidInputMessage(attributePath(attribute, path.slice(2)), reason);
}

const TYPES_BY_STATUS: Record<number, string> = {
  400: 'HTTPBadRequest',
  401: 'HTTPUnauthorized',
  403: 'HTTPForbidden',
  404: 'HTTPNotFound',
  405: 'HTTPMethodNotAllowed',
  406: 'HTTPNotAcceptable',
  413: 'HTTPRequestEntityTooLarge',
  415: 'HTTPUnsupportedMediaType',
};

/** The status, type and message a failure of any kind is reported with. */
export function classify(error: FastifyError | Error, request: FastifyRequest): { status: number; type: string; message: string } {
  if (error instanceof NeutronError) return { status: error.status, type: error.type, message: error.message };
  const fastifyError = error as FastifyError;
  if (fastifyError.validation && fastifyError.validationContext === 'body') {
    const meta = (request.routeOptions.config ?? {}) as RouteMeta;
    return { status: 400, type: 'HTTPBadRequest', message: describeSchemaError(fastifyError.validation[0] as SchemaError, meta) };
  }
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    let message = error.message;
    if (fastifyError.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      message = `Unsupported Content-Type '${request.headers['content-type'] ?? ''}': send application/json`;
    } else if (fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      message = `Request body too large: at most ${request.routeOptions.bodyLimit ?? 'the configured'} bytes`;
    } else if (fastifyError.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
      message = 'Resource body required';
    } else if (fastifyError.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || (status === 400 && error instanceof SyntaxError)) {
      message = `Malformed JSON in request body: ${error.message}`;
    }
    return { status, type: TYPES_BY_STATUS[status] ?? 'HTTPClientError', message };
  }
  return { status: 500, type: 'HTTPInternalServerError', message: 'Request failed: internal server error while processing your request.' };
}

export function sendError(reply: FastifyReply, status: number, type: string, message: string): FastifyReply {
  return reply.code(status).type('application/json').send(errorBody(type, message));
}
