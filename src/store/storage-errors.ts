/**
 * What a failed write to the store means for a client: SQLite's full-disk and
 * I/O errors are the host's trouble, not a bug of the request, and are
 * answered as such (507 and 503, with what happened) instead of a generic 500.
 */

export interface StorageFailure {
  status: 503 | 507;
  type: string;
  message: string;
}

/** The client's answer to a store error, or undefined when the error is not one of the disk's. */
export function storageFailure(error: unknown): StorageFailure | undefined {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return undefined;
  const enospc = typeof message === 'string' && /ENOSPC|no space left/i.test(message);
  // SQLite reports a write that hit ENOSPC as SQLITE_FULL ("database or disk is full"); the change is rolled back.
  if (code === 'SQLITE_FULL' || enospc) {
    return {
      status: 507,
      type: 'InsufficientStorage',
      message: 'The disk holding the state directory is full: the change was not made. Free some space and retry.',
    };
  }
  if (code.startsWith('SQLITE_IOERR')) {
    return {
      status: 503,
      type: 'StorageUnavailable',
      message: `The store could not read or write its file (${code}): the disk may be full or failing, `
        + 'and the change may not have been made. Retry once the disk is fixed.',
    };
  }
  if (code.startsWith('SQLITE_READONLY')) {
    return { status: 503, type: 'StorageUnavailable', message: `The store cannot be written (${code}): the change was not made.` };
  }
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || code === 'SQLITE_NOMEM') {
    return { status: 503, type: 'StorageUnavailable', message: `The store is unavailable for a moment (${code}): retry.` };
  }
  return undefined;
}
