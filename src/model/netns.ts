/**
 * One spelling per network namespace. A port's netns is a name under
 * /run/netns or an absolute path (the `netns` format); several spellings
 * reach the same file (`/run/netns/NS`, `/run/netns//NS/`,
 * `/run/netns/./NS`, `NS`). Stored canonical, they compare equal, so that
 * one interface cannot be registered as two ports by spelling it twice.
 * What only the file system can tell (a symlink, `/proc/self/root/...`) the
 * engine tells, by the namespace itself (see docs/engine.md).
 */
import { formatReason } from './formats.js';

const NETNS_DIR = ['run', 'netns'];

/**
 * The canonical spelling of a netns the `netns` format accepts: a path with
 * repeated '/', '.' components and a trailing '/' dropped; a path to a file
 * directly under /run/netns as its name (`/run/netns//NS/` → `NS`). A name is
 * its own canonical spelling. Nothing is looked up.
 */
export function canonicalNetns(netns: string): string {
  if (!netns.startsWith('/')) return netns;
  const parts = netns.split('/').filter((part) => part !== '' && part !== '.');
  // '..' would depend on symlinks to resolve: the format refuses it, and it is left as written.
  if (parts.includes('..')) return netns;
  const [first, second, name, ...rest] = parts;
  if (first === NETNS_DIR[0] && second === NETNS_DIR[1] && name !== undefined && rest.length === 0
    && formatReason('netns', name) === undefined) {
    return name;
  }
  return `/${parts.join('/')}`;
}
