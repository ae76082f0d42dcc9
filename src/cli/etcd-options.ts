/**
 * The etcd options `tapas serve --etcd` and `tapas agent` share. Nothing here
 * loads the etcd client: commands that do not use it start as fast as before.
 */
import type { Command } from 'commander';

import type { EtcdSettings } from '../cluster/etcd.js';
import { UsageError } from './errors.js';

export interface EtcdFlags {
  etcd?: string;
  etcdPrefix: string;
  etcdUser?: string;
  etcdPassword?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
}

export function addEtcdOptions(command: Command, etcdHelp: string): Command {
  return command
    .option('--etcd <url,...>', etcdHelp)
    .option('--etcd-prefix <prefix>', 'where tapas keeps its keys in etcd (PREFIX/v1/nodes/HOST/..., PREFIX/v1/state/HOST/...)', '/tapas')
    .option('--etcd-user <name>', 'etcd user (etcd authentication); the password comes from --etcd-password or TAPAS_ETCD_PASSWORD')
    .option('--etcd-password <password>', 'etcd password (visible in ps: prefer the TAPAS_ETCD_PASSWORD environment variable)')
    .option('--etcd-ca <file>', 'TLS: the CA certificate that signed etcd\'s (with https:// endpoints)')
    .option('--etcd-cert <file>', 'TLS: this client\'s certificate (etcd --client-cert-auth: its CN is the etcd user)')
    .option('--etcd-key <file>', 'TLS: this client\'s private key');
}

/** The settings the flags give, or undefined without --etcd. */
export async function etcdSettingsOf(flags: EtcdFlags): Promise<EtcdSettings | undefined> {
  if (flags.etcd === undefined) {
    if (flags.etcdUser !== undefined || flags.etcdCa !== undefined || flags.etcdCert !== undefined) {
      throw new UsageError('--etcd-user, --etcd-ca and --etcd-cert need --etcd');
    }
    return undefined;
  }
  const { parseEndpoints } = await import('../cluster/etcd.js');
  let endpoints: string[];
  try {
    endpoints = parseEndpoints(flags.etcd);
  } catch (error) {
    throw new UsageError(`invalid --etcd: ${(error as Error).message}`);
  }
  if (!flags.etcdPrefix.startsWith('/') || flags.etcdPrefix.includes('//')) {
    throw new UsageError(`invalid --etcd-prefix '${flags.etcdPrefix}': an absolute key prefix such as /tapas`);
  }
  if ((flags.etcdCert === undefined) !== (flags.etcdKey === undefined)) throw new UsageError('--etcd-cert and --etcd-key go together');
  const password = flags.etcdPassword ?? (process.env.TAPAS_ETCD_PASSWORD || undefined);
  if (flags.etcdUser !== undefined && password === undefined) throw new UsageError('--etcd-user needs --etcd-password or TAPAS_ETCD_PASSWORD');
  return {
    endpoints,
    prefix: flags.etcdPrefix,
    ...(flags.etcdUser === undefined ? {} : { user: flags.etcdUser, password: password! }),
    ...(flags.etcdCa === undefined ? {} : { caFile: flags.etcdCa }),
    ...(flags.etcdCert === undefined ? {} : { certFile: flags.etcdCert, keyFile: flags.etcdKey! }),
  };
}
