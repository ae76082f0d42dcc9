/**
 * Errors the service raises, each with the HTTP status and the Neutron error
 * type a Neutron server would give. The API turns them into
 * `{"NeutronError": {"type", "message", "detail"}}`.
 */
export class NeutronError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** 400: the request is malformed or an attribute is invalid. */
export class BadRequest extends NeutronError {
  constructor(message: string, type = 'HTTPBadRequest') {
    super(400, type, message);
  }
}

export function invalidInput(attribute: string, reason: string): BadRequest {
  return new BadRequest(`Invalid input for ${attribute}. Reason: ${reason}.`);
}

/** 404 under a resource-specific type, as Neutron and TaaS name them. */
export class NotFound extends NeutronError {
  constructor(type: string, message: string) {
    super(404, type, message);
  }
}

/** 403: the caller may not do this at all (a reader writing, a member acting as another project). */
export class PolicyNotAuthorized extends NeutronError {
  constructor(message: string) {
    super(403, 'PolicyNotAuthorized', message);
  }
}

/** 409: the request is well formed but conflicts with what exists. */
export class Conflict extends NeutronError {
  constructor(type: string, message: string) {
    super(409, type, message);
  }
}

export class OverQuota extends NeutronError {
  constructor(resource: string, limit: number) {
    super(409, 'OverQuota', `Quota exceeded for resources: ['${resource}']. The limit for this project is ${limit}.`);
  }
}
