export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;

/** Bad command-line input: printed without a stack trace, exit code 2. */
export class UsageError extends Error {}
