/** Who is asking: the project a request acts for and the roles it holds. */
export type Role = 'admin' | 'member' | 'reader';
export const ROLES: readonly Role[] = ['admin', 'member', 'reader'];

export interface RequestContext {
  projectId: string;
  roles: readonly Role[];
}

export const isAdmin = (context: RequestContext): boolean => context.roles.includes('admin');

/** Writers are admins and members; a reader only reads. */
export const canWrite = (context: RequestContext): boolean => isAdmin(context) || context.roles.includes('member');

/** Whether the caller sees a resource at all: another project's resources do not exist for a non-admin. */
export const canSee = (context: RequestContext, resource: { project_id: string }): boolean =>
  isAdmin(context) || resource.project_id === context.projectId;
