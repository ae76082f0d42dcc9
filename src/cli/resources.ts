/**
 * `tapas port …` and `tapas tap service|flow|mirror …`: the daemon's resources
 * with the OpenStack client's nouns, verbs, option names and output, so the
 * TaaS usage guide reads the same with `openstack` replaced by `tapas`.
 * Wherever a resource is referenced, its name or its id will do.
 */
import { Command, Option } from 'commander';

import { DIRECTIONS, type Direction } from '../engine/plan.js';

import { clientFor, ServerError, type ApiClient, type Collection, type Resource } from './client.js';
import { UsageError } from './errors.js';
import { addOutputOptions, formatMany, formatOne, print, selectColumns, type Column, type OutputFlags } from './output.js';

interface Noun extends Collection {
  /** Every attribute the API shows (a `-c` outside these is refused before any request). */
  attributes: string[];
  /** Headings of attributes, as the OpenStack client (and its TaaS plugin) names them. */
  headings: Record<string, string>;
  /** What `list` shows, in order. */
  listed: string[];
  /** Derived attributes a list row gets before it is shown. */
  flatten?: (resource: Resource) => Resource;
}

const COMMON = ['id', 'project_id', 'tenant_id', 'name', 'description', 'status', 'status_reason', 'created_at', 'updated_at'];

export const PORT: Noun = {
  kind: 'port', label: 'port', path: '/v2.0/ports',
  attributes: [...COMMON, 'mac_address', 'admin_state_up', 'binding:host_id', 'binding:profile'],
  headings: { id: 'ID', name: 'Name', mac_address: 'MAC Address', status: 'Status', interface: 'Interface', netns: 'Netns', tenant_id: 'Tenant' },
  listed: ['id', 'name', 'mac_address', 'interface', 'netns', 'status'],
  flatten: (port) => {
    const profile = (port['binding:profile'] ?? {}) as { interface?: string; netns?: string };
    return { ...port, interface: profile.interface ?? null, netns: profile.netns ?? null };
  },
};

export const TAP_SERVICE: Noun = {
  kind: 'tap_service', label: 'tap service', path: '/v2.0/taas/tap_services',
  attributes: [...COMMON, 'port_id'],
  headings: { id: 'ID', tenant_id: 'Tenant', name: 'Name', port_id: 'Port', status: 'Status' },
  listed: ['id', 'tenant_id', 'name', 'port_id', 'status'],
};

export const TAP_FLOW: Noun = {
  kind: 'tap_flow', label: 'tap flow', path: '/v2.0/taas/tap_flows',
  attributes: [...COMMON, 'tap_service_id', 'source_port', 'direction', 'vlan_filter'],
  headings: { id: 'ID', tenant_id: 'Tenant', name: 'Name', status: 'Status', direction: 'Direction' },
  listed: ['id', 'tenant_id', 'name', 'status', 'source_port', 'tap_service_id', 'direction'],
};

export const TAP_MIRROR: Noun = {
  kind: 'tap_mirror', label: 'tap mirror', path: '/v2.0/taas/tap_mirrors',
  attributes: [...COMMON, 'port_id', 'directions', 'remote_ip', 'mirror_type'],
  headings: {
    id: 'ID', tenant_id: 'Tenant', name: 'Name', port_id: 'Port', directions: 'Directions',
    remote_ip: 'Remote IP', mirror_type: 'Mirror Type', status: 'Status',
  },
  listed: ['id', 'tenant_id', 'name', 'port_id', 'directions', 'remote_ip', 'mirror_type', 'status'],
};

const heading = (noun: Noun, attribute: string): string => noun.headings[attribute] ?? attribute;

/** A shown resource: every attribute it has, sorted by heading (as `openstack … show` does). */
function showColumns(noun: Noun, attributes: readonly string[]): Column[] {
  return attributes.map((attribute) => ({ attribute, heading: heading(noun, attribute) }))
    .sort((a, b) => (a.heading < b.heading ? -1 : a.heading > b.heading ? 1 : 0));
}

const listColumns = (noun: Noun): Column[] => noun.listed.map((attribute) => ({ attribute, heading: heading(noun, attribute) }));

/** Refuses a -c that names no column before anything is sent (a create must not happen and then fail). */
function checkColumns(columns: readonly Column[], flags: OutputFlags): void {
  selectColumns(columns, flags.column);
}

function showOne(noun: Noun, resource: Resource, flags: OutputFlags): void {
  print(formatOne(resource, showColumns(noun, Object.keys(resource)), flags));
}

const lastCommand = (args: unknown[]): Command => args[args.length - 1] as Command;

type Creator = (client: ApiClient, flags: Record<string, any>, positional: string[]) => Promise<Record<string, unknown>>;

interface Verbs {
  /** Builds the create body from the flags (resolving names); declares its own options on `create`. */
  create: { options: (command: Command) => Command; body: Creator; examples: string; argument?: [string, string] };
  examples: { list: string; show: string; update: string; delete: string };
}

function owned(flags: { name?: string; description?: string; project?: string }): Record<string, unknown> {
  return {
    ...(flags.name === undefined ? {} : { name: flags.name }),
    ...(flags.description === undefined ? {} : { description: flags.description }),
    ...(flags.project === undefined ? {} : { project_id: flags.project }),
  };
}

function registerNoun(parent: Command, word: string, noun: Noun, verbs: Verbs, summary: string): Command {
  const command = parent.command(word).summary(summary).description(`${summary}: create, list, show, update and delete ${noun.label}s.`)
    .configureHelp({ ...parent.configureHelp(), showGlobalOptions: true })
    .addHelpText('after', `\nExamples:\n${verbs.create.examples}\n${verbs.examples.list}\n${verbs.examples.delete}`);

  const create = command.command('create').description(`create a ${noun.label}`);
  if (verbs.create.argument) create.argument(...verbs.create.argument);
  addOutputOptions(verbs.create.options(create)
    .option('--description <DESCRIPTION>', `description of the ${noun.label}`)
    .option('--project <PROJECT>', 'owner project (admin only when it is not yours)'))
    .addHelpText('after', `\nExamples:\n${verbs.create.examples}`)
    .action(async (...args: unknown[]) => {
      const cmd = lastCommand(args);
      const positional = args.slice(0, -2) as string[];
      checkColumns(showColumns(noun, noun.attributes), cmd.opts<OutputFlags>());
      const client = clientFor(cmd);
      const body = await verbs.create.body(client, cmd.opts(), positional);
      showOne(noun, await client.create(noun, body), cmd.opts<OutputFlags>());
    });

  addOutputOptions(command.command('list').description(`list ${noun.label}s`)
    .option('--name <NAME>', `only ${noun.label}s with this name`)
    .option('--project <PROJECT>', 'only resources of this project'))
    .addHelpText('after', `\nExamples:\n${verbs.examples.list}`)
    .action(async (flags: OutputFlags & { name?: string; project?: string }, cmd: Command) => {
      checkColumns(listColumns(noun), flags);
      const client = clientFor(cmd);
      const filters = { ...(flags.name === undefined ? {} : { name: flags.name }), ...(flags.project === undefined ? {} : { project_id: flags.project }) };
      const rows = (await client.list(noun, filters)).map((row) => noun.flatten?.(row) ?? row);
      print(formatMany(rows, listColumns(noun), flags));
    });

  addOutputOptions(command.command('show').description(`show the details of a ${noun.label}`))
    .argument(`<${noun.kind}>`, `name or ID of the ${noun.label}`)
    .addHelpText('after', `\nExamples:\n${verbs.examples.show}`)
    .action(async (nameOrId: string, flags: OutputFlags, cmd: Command) => {
      checkColumns(showColumns(noun, noun.attributes), flags);
      const client = clientFor(cmd);
      showOne(noun, await client.find(noun, nameOrId), flags);
    });

  addOutputOptions(command.command('update').description(`rename a ${noun.label} or change its description (nothing else can change)`)
    .argument(`<${noun.kind}>`, `name or ID of the ${noun.label}`)
    .option('--name <NAME>', 'new name')
    .option('--description <DESCRIPTION>', 'new description'))
    .addHelpText('after', `\nExamples:\n${verbs.examples.update}`)
    .action(async (nameOrId: string, flags: OutputFlags & { name?: string; description?: string }, cmd: Command) => {
      const changes = owned({ name: flags.name, description: flags.description });
      if (Object.keys(changes).length === 0) throw new UsageError('nothing to update: give --name and/or --description');
      checkColumns(showColumns(noun, noun.attributes), flags);
      const client = clientFor(cmd);
      const { id } = await client.find(noun, nameOrId);
      showOne(noun, await client.update(noun, id, changes), flags);
    });

  command.command('delete').description(`delete ${noun.label}s${deleteCascade(noun)}`)
    .argument(`<${noun.kind}...>`, `names or IDs of the ${noun.label}s`)
    .addHelpText('after', `\nExamples:\n${verbs.examples.delete}`)
    .action(async (namesOrIds: string[], _flags: unknown, cmd: Command) => {
      const client = clientFor(cmd);
      let failed = 0;
      let lastError: unknown;
      for (const nameOrId of namesOrIds) {
        try {
          const { id } = await client.find(noun, nameOrId);
          await client.delete(noun, id);
        } catch (error) {
          if (!(error instanceof ServerError)) throw error;
          failed += 1;
          lastError = error;
          if (namesOrIds.length > 1) process.stderr.write(`tapas: failed to delete ${noun.label} '${nameOrId}': ${error.message}\n`);
        }
      }
      if (failed === 1 && namesOrIds.length === 1) throw lastError;
      if (failed > 0) throw new ServerError(`failed to delete ${failed} of ${namesOrIds.length} ${noun.label}s`);
    });
  return command;
}

function deleteCascade(noun: Noun): string {
  if (noun === PORT) return ' (with the tap services, flows and mirrors that use them)';
  if (noun === TAP_SERVICE) return ' (with their tap flows)';
  return '';
}

function upper(text: string): string {
  return text.toUpperCase();
}

function parseDirection(text: string): Direction {
  const direction = upper(text) as Direction;
  if (!DIRECTIONS.includes(direction)) throw new UsageError(`--direction must be one of IN, OUT, BOTH, not '${text}'`);
  return direction;
}

/** `--directions IN=101` (repeatable) → {"IN": 101}. */
export function parseDirections(text: string, previous: Record<string, number> = {}): Record<string, number> {
  const match = /^([A-Za-z]+)=(\d{1,10})$/.exec(text);
  const direction = match ? upper(match[1]!) : '';
  if (!match || (direction !== 'IN' && direction !== 'OUT')) {
    throw new UsageError(`--directions must be IN=TUNNEL_ID or OUT=TUNNEL_ID (e.g. IN=101), not '${text}'`);
  }
  if (direction in previous) throw new UsageError(`--directions gives ${direction} twice`);
  return { ...previous, [direction]: Number(match[2]) };
}

export function registerResources(program: Command): void {
  registerNoun(program, 'port', PORT, {
    create: {
      argument: ['<name>', 'name of the port'],
      options: (command) => command
        .requiredOption('--interface <IF>', 'the host-side interface facing the workload (VM tap, container veth)')
        .option('--netns <NETNS>', 'network namespace of the interface (default: the daemon\'s own)')
        .option('--host <HOST>', 'binding:host_id (default: the daemon\'s host name)'),
      body: async (_client, flags, [name]) => ({
        ...owned({ ...flags, name }),
        'binding:profile': flags.netns === undefined ? { interface: flags.interface } : { interface: flags.interface, netns: flags.netns },
        ...(flags.host === undefined ? {} : { 'binding:host_id': flags.host }),
      }),
      examples: '  tapas port create vm1-port --interface tap0\n  tapas port create web --interface veth1a2b --netns host1 -f value -c ID',
    },
    examples: {
      list: '  tapas port list\n  tapas port list --name vm1-port -f value -c ID',
      show: '  tapas port show vm1-port\n  tapas port show vm1-port -f json',
      update: '  tapas port update vm1-port --description "web server, eth0"',
      delete: '  tapas port delete vm1-port vm2-port',
    },
  }, 'ports: registered interfaces, each facing one VM or container');

  const tap = program.command('tap').configureHelp({ ...program.configureHelp(), showGlobalOptions: true }).summary('tap services, tap flows and tap mirrors (OpenStack TaaS)')
    .description('Tap-as-a-Service resources: a tap service receives copies, a tap flow sends a port\'s traffic to a tap service, '
      + 'a tap mirror sends a port\'s traffic to a remote collector in GRE or ERSPAN.')
    .addHelpText('after', `
Examples:
  tapas tap service create --name ts_0 --port monitor-port
  tapas tap flow create --name tf_0 --port vm1-port --tap-service ts_0 --direction BOTH
  tapas tap mirror create --name tm_0 --port vm1-port --directions IN=101 --directions OUT=102 \\
      --remote-ip 192.0.2.10 --mirror-type erspanv1`);

  registerNoun(tap, 'service', TAP_SERVICE, {
    create: {
      options: (command) => command
        .option('--name <NAME>', 'name of the tap service')
        .requiredOption('--port <PORT>', 'name or ID of the port that receives the copies (the monitor\'s)'),
      body: async (client, flags) => ({ ...owned(flags), port_id: (await client.find(PORT, flags.port)).id }),
      examples: '  tapas tap service create --name ts_0 --port monitor-port',
    },
    examples: {
      list: '  tapas tap service list\n  tapas tap service list -f json',
      show: '  tapas tap service show ts_0 -c Status -f value',
      update: '  tapas tap service update ts_0 --name ids-feed',
      delete: '  tapas tap service delete ts_0',
    },
  }, 'tap services: where mirrored traffic goes');

  registerNoun(tap, 'flow', TAP_FLOW, {
    create: {
      options: (command) => command
        .option('--name <NAME>', 'name of the tap flow')
        .requiredOption('--port <SOURCE_PORT>', 'name or ID of the port whose traffic is mirrored')
        .requiredOption('--tap-service <TAP_SERVICE>', 'name or ID of the tap service that receives the copies')
        .addOption(new Option('--direction <DIRECTION>', 'IN (to the workload), OUT (from it) or BOTH; any case')
          .choices([...DIRECTIONS]).argParser(parseDirection).makeOptionMandatory())
        .option('--vlan-filter <VLAN_FILTER>', 'only frames of these VLAN ids, e.g. 1-5,9,18-27'),
      body: async (client, flags) => ({
        ...owned(flags),
        source_port: (await client.find(PORT, flags.port)).id,
        tap_service_id: (await client.find(TAP_SERVICE, flags.tapService)).id,
        direction: flags.direction,
        ...(flags.vlanFilter === undefined ? {} : { vlan_filter: flags.vlanFilter }),
      }),
      examples: '  tapas tap flow create --name tf_0 --port vm1-port --tap-service ts_0 --direction BOTH\n'
        + '  tapas tap flow create --port trunk-port --tap-service ts_0 --direction OUT --vlan-filter 1-5,9',
    },
    examples: {
      list: '  tapas tap flow list\n  tapas tap flow list -c Name -c Status -f value',
      show: '  tapas tap flow show tf_0',
      update: '  tapas tap flow update tf_0 --description "vm1, both ways"',
      delete: '  tapas tap flow delete tf_0',
    },
  }, 'tap flows: a port\'s traffic, one or both ways, copied to a tap service');

  registerNoun(tap, 'mirror', TAP_MIRROR, {
    create: {
      options: (command) => command
        .option('--name <NAME>', 'name of the tap mirror')
        .requiredOption('--port <PORT>', 'name or ID of the port whose traffic is mirrored')
        .addOption(new Option('--directions <DIRECTION=TUNNEL_ID>', 'a direction (IN or OUT) and its tunnel id: GRE key or ERSPAN session id; repeatable')
          .argParser(parseDirections).makeOptionMandatory())
        .requiredOption('--remote-ip <IP>', 'the collector\'s address (IPv4 or IPv6)')
        .addOption(new Option('--mirror-type <TYPE>', 'tunnel: gre or erspanv1 (ERSPAN type II)').choices(['gre', 'erspanv1']).makeOptionMandatory()),
      body: async (client, flags) => ({
        ...owned(flags),
        port_id: (await client.find(PORT, flags.port)).id,
        directions: flags.directions,
        remote_ip: flags.remoteIp,
        mirror_type: flags.mirrorType,
      }),
      examples: '  tapas tap mirror create --name tm_0 --port vm1-port --directions IN=101 --directions OUT=102 \\\n'
        + '      --remote-ip 192.0.2.10 --mirror-type erspanv1',
    },
    examples: {
      list: '  tapas tap mirror list',
      show: '  tapas tap mirror show tm_0 -f json',
      update: '  tapas tap mirror update tm_0 --name to-ids',
      delete: '  tapas tap mirror delete tm_0',
    },
  }, 'tap mirrors: a port\'s traffic sent in GRE or ERSPAN to a remote collector');
}
