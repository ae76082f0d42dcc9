/**
 * `tapas port …` and `tapas tap service|flow|mirror …`: the daemon's resources
 * with the OpenStack client's nouns, verbs, option names and output, so the
 * TaaS usage guide reads the same with `openstack` replaced by `tapas`.
 * Wherever a resource is referenced, its name or its id will do.
 */
import { Command, Option } from 'commander';

import { attributesOf, CONTRACT, RESOURCE_KINDS, type Attribute, type CliOption, type ResourceKind } from '../model/contract.js';
import { attributePath, formatReason, invalidInputMessage, type FormatName } from '../model/formats.js';

import { clientFor, ServerError, type ApiClient, type Collection, type Resource } from './client.js';
import { UsageError } from './errors.js';
import { addOutputOptions, formatMany, formatOne, print, selectColumns, type Column, type OutputFlags } from './output.js';

/** A value of an object attribute shown as a column of its own (binding:profile's interface). */
interface Part {
  attribute: string;
  key: string;
}

/** A noun of the command line, read off the resource contract. */
interface Noun extends Collection {
  kind: ResourceKind;
  /** Every attribute the API shows (a `-c` outside these is refused before any request). */
  attributes: string[];
  /** Headings of attributes, as the OpenStack client (and its TaaS plugin) names them. */
  headings: Record<string, string>;
  /** What `list` shows, in order. */
  listed: string[];
  /** Object values a list row shows as columns of their own. */
  parts: Part[];
}

function nounOf(kind: ResourceKind): Noun {
  const { label, paths } = CONTRACT[kind];
  const headings: Record<string, string> = {};
  const listed: Array<[number, string]> = [];
  const parts: Part[] = [];
  const show = (name: string, cli: { heading?: string; list?: number }) => {
    if (cli.heading !== undefined) headings[name] = cli.heading;
    if (cli.list !== undefined) listed.push([cli.list, name]);
  };
  for (const [name, attribute] of attributesOf(kind)) {
    show(name, attribute.cli ?? {});
    for (const [key, part] of Object.entries(attribute.cli?.parts ?? {})) {
      parts.push({ attribute: name, key });
      show(key, part);
    }
  }
  return {
    kind, label, path: paths[0]!,
    attributes: attributesOf(kind).filter(([, attribute]) => attribute.visible).map(([name]) => name),
    headings,
    listed: listed.sort(([a], [b]) => a - b).map(([, name]) => name),
    parts,
  };
}

const NOUNS = Object.fromEntries(RESOURCE_KINDS.map((kind) => [kind, nounOf(kind)])) as unknown as Record<ResourceKind, Noun>;
export const PORT = NOUNS.port;
export const TAP_SERVICE = NOUNS.tap_service;
export const TAP_FLOW = NOUNS.tap_flow;
export const TAP_MIRROR = NOUNS.tap_mirror;

/** A list row with the parts of its object values as columns of their own. */
function flatten(noun: Noun, row: Resource): Resource {
  if (noun.parts.length === 0) return row;
  return {
    ...row,
    ...Object.fromEntries(noun.parts.map(({ attribute, key }) => [key, (row[attribute] as Record<string, unknown> | undefined)?.[key] ?? null])),
  };
}

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

/** A create option the contract declares: the attribute (and key, for a part of an object) it sets. */
interface CreateOption {
  attribute: string;
  key?: string;
  cli: CliOption;
  schema: { type?: unknown; format?: string; enum?: string[]; properties?: Record<string, { type?: unknown }> };
  required: boolean;
  /** Set once commander knows the option: the name its value is found under. */
  option?: Option;
}

const longFlag = (flag: string): string => flag.split(/[ ,]+/).find((part) => part.startsWith('--'))!;

function createOptions(kind: ResourceKind): CreateOption[] {
  const options: CreateOption[] = [];
  for (const [name, attribute] of attributesOf(kind)) {
    if (attribute.post === 'no') continue;
    const schema = attribute.schema as CreateOption['schema'] & { required?: string[] };
    if (attribute.cli?.option) options.push({ attribute: name, cli: attribute.cli.option, schema, required: attribute.post === 'required' });
    for (const [key, part] of Object.entries(attribute.cli?.parts ?? {})) {
      if (!part.option) continue;
      options.push({
        attribute: name, key, cli: part.option, schema: schema.properties?.[key] ?? {},
        required: attribute.post === 'required' && (schema.required ?? []).includes(key),
      });
    }
  }
  return options.sort((a, b) => (a.cli.order ?? 50) - (b.cli.order ?? 50));
}

/** Refuses a value the attribute's format does not admit, in the API's words, before anything is sent. */
function checkFormat(format: string, value: unknown, attribute: string, keys: string[] = []): void {
  const reason = formatReason(format, value);
  if (reason !== undefined) throw new UsageError(invalidInputMessage(attributePath(attribute, keys), reason));
}

/** The commander option for a contract option: its choices, and a parser that checks what the contract says. */
function commanderOption(spec: CreateOption, label: string): Option {
  const { cli, schema } = spec;
  const flag = longFlag(cli.flag);
  const option = new Option(cli.flag, cli.help.replace(/\{label\}/g, label));
  if (spec.required) option.makeOptionMandatory();
  if (schema.enum) {
    const values = schema.enum;
    option.choices(values);
    if (cli.anyCase) {
      option.argParser((text: string) => {
        const value = values.find((candidate) => candidate.toUpperCase() === text.toUpperCase());
        if (value === undefined) throw new UsageError(`${flag} must be one of ${values.join(', ')}, not '${text}'`);
        return value;
      });
    }
  } else if (cli.entries) {
    const keys = Object.keys(schema.properties ?? {});
    const valueName = /=([A-Z_]+)>/.exec(cli.flag)?.[1] ?? 'VALUE';
    option.argParser((text: string, previous: Record<string, unknown> = {}) => {
      const match = /^([A-Za-z]+)=(\d{1,10})$/.exec(text);
      const key = match ? keys.find((candidate) => candidate.toUpperCase() === match[1]!.toUpperCase()) : undefined;
      if (!match || key === undefined) {
        throw new UsageError(`${flag} must be ${keys.map((k) => `${k}=${valueName}`).join(' or ')} (e.g. ${cli.entries!.example}), not '${text}'`);
      }
      if (key in previous) throw new UsageError(`${flag} gives ${key} twice`);
      return { ...previous, [key]: Number(match[2]) };
    });
  } else if (Array.isArray(schema.type) ? schema.type.includes('integer') : schema.type === 'integer') {
    // An integer attribute (udp_port): sent as a number, checked by its format first.
    option.argParser((text: string) => {
      if (!/^\d{1,10}$/.test(text)) throw new UsageError(`${flag} must be an integer, not '${text}'`);
      const value = Number(text);
      if (schema.format !== undefined) checkFormat(schema.format, value, spec.attribute, spec.key === undefined ? [] : [spec.key]);
      return value;
    });
  } else if (schema.format !== undefined && cli.refersTo === undefined) {
    const format = schema.format;
    option.argParser((text: string) => {
      checkFormat(format, text, spec.attribute, spec.key === undefined ? [] : [spec.key]);
      return text;
    });
  }
  spec.option = option;
  return option;
}

/** Values whose format another attribute chooses (tunnel ids by mirror type), checked once both are known. */
function checkChosenFormats(kind: ResourceKind, body: Record<string, unknown>): void {
  for (const [name, attribute] of attributesOf(kind) as Array<[string, Attribute]>) {
    const by = attribute.formatBy;
    const value = body[name];
    if (!by || value === undefined || value === null) continue;
    const format: FormatName | undefined = by.formats[String(body[by.attribute])];
    if (format === undefined) continue;
    for (const [key, inner] of Object.entries(value as Record<string, unknown>)) checkFormat(format, inner, name, [key]);
  }
}

/** The create body from the options given: parts gathered into their objects, then names resolved to IDs. */
async function createBody(client: ApiClient, noun: Noun, options: CreateOption[], flags: Record<string, unknown>,
  positional: string[]): Promise<Record<string, unknown>> {
  const given = options.flatMap((spec) => {
    const value = spec.cli.positional ? positional.shift() : flags[spec.option!.attributeName()];
    return value === undefined ? [] : [{ spec, value }];
  });
  const raw: Record<string, unknown> = {};
  for (const { spec, value } of given) raw[spec.attribute] = value;
  checkChosenFormats(noun.kind, raw);
  const body: Record<string, unknown> = {};
  for (const { spec, value } of given) {
    const resolved = spec.cli.refersTo ? (await client.find(NOUNS[spec.cli.refersTo], String(value))).id : value;
    if (spec.key === undefined) body[spec.attribute] = resolved;
    else body[spec.attribute] = { ...(body[spec.attribute] as Record<string, unknown> | undefined), [spec.key]: resolved };
  }
  return body;
}

/** Options whose value names a resource, and the noun (as typed on the command line) that lists them. */
export function referenceOptions(): Record<string, string> {
  return Object.fromEntries(RESOURCE_KINDS.flatMap((kind) => createOptions(kind))
    .flatMap(({ cli }) => (cli.refersTo ? [[longFlag(cli.flag), CONTRACT[cli.refersTo].label]] : [])));
}

interface Examples {
  create: string;
  list: string;
  show: string;
  update: string;
  delete: string;
}

function registerNoun(parent: Command, word: string, noun: Noun, examples: Examples, summary: string): Command {
  const command = parent.command(word).summary(summary).description(`${summary}: create, list, show, update and delete ${noun.label}s.`)
    .configureHelp({ ...parent.configureHelp(), showGlobalOptions: true })
    .addHelpText('after', `\nExamples:\n${examples.create}\n${examples.list}\n${examples.delete}`);

  const options = createOptions(noun.kind);
  const create = command.command('create').description(`create a ${noun.label}`);
  for (const spec of options) {
    if (spec.cli.positional) create.argument(`<${spec.attribute}>`, spec.cli.help.replace(/\{label\}/g, noun.label));
    else create.addOption(commanderOption(spec, noun.label));
  }
  addOutputOptions(create)
    .addHelpText('after', `\nExamples:\n${examples.create}`)
    .action(async (...args: unknown[]) => {
      const cmd = lastCommand(args);
      const positional = args.slice(0, -2) as string[];
      checkColumns(showColumns(noun, noun.attributes), cmd.opts<OutputFlags>());
      const client = clientFor(cmd);
      const body = await createBody(client, noun, options, cmd.opts(), positional);
      showOne(noun, await client.create(noun, body), cmd.opts<OutputFlags>());
    });

  addOutputOptions(command.command('list').description(`list ${noun.label}s`)
    .option('--name <NAME>', `only ${noun.label}s with this name`)
    .option('--project <PROJECT>', 'only resources of this project'))
    .addHelpText('after', `\nExamples:\n${examples.list}`)
    .action(async (flags: OutputFlags & { name?: string; project?: string }, cmd: Command) => {
      checkColumns(listColumns(noun), flags);
      const client = clientFor(cmd);
      const filters = { ...(flags.name === undefined ? {} : { name: flags.name }), ...(flags.project === undefined ? {} : { project_id: flags.project }) };
      const rows = (await client.list(noun, filters)).map((row) => flatten(noun, row));
      print(formatMany(rows, listColumns(noun), flags));
    });

  addOutputOptions(command.command('show').description(`show the details of a ${noun.label}`))
    .argument(`<${noun.kind}>`, `name or ID of the ${noun.label}`)
    .addHelpText('after', `\nExamples:\n${examples.show}`)
    .action(async (nameOrId: string, flags: OutputFlags, cmd: Command) => {
      checkColumns(showColumns(noun, noun.attributes), flags);
      const client = clientFor(cmd);
      showOne(noun, await client.find(noun, nameOrId), flags);
    });

  // The attributes an update may change (allow_put), each under its create option's flag.
  // Checked as create checks them (an integer is sent as a number, a filter compiled first).
  const putAttributes = new Set(attributesOf(noun.kind).filter(([, attribute]) => attribute.put).map(([name]) => name));
  const updatable = createOptions(noun.kind).filter((spec) => spec.key === undefined && putAttributes.has(spec.attribute)).map((spec) => {
    const option = commanderOption({ ...spec, required: false }, noun.label);
    option.description = `new ${spec.attribute}`;
    return { attribute: spec.attribute, option };
  });
  const selects = putAttributes.has('filter');
  const update = command.command('update')
    .description(selects
      ? `rename a ${noun.label}, change its description, filter, snaplen or sample_rate (nothing else can change)`
      : `rename a ${noun.label} or change its description (nothing else can change)`)
    .argument(`<${noun.kind}>`, `name or ID of the ${noun.label}`);
  for (const { option } of updatable) update.addOption(option);
  addOutputOptions(update)
    .addHelpText('after', `\nExamples:\n${examples.update}`)
    .action(async (nameOrId: string, flags: OutputFlags & Record<string, unknown>, cmd: Command) => {
      const changes = Object.fromEntries(updatable.flatMap(({ attribute, option }) => {
        const value = flags[option.attributeName()];
        return value === undefined ? [] : [[attribute, value]];
      }));
      if (Object.keys(changes).length === 0) {
        throw new UsageError(`nothing to update: give ${updatable.map(({ option }) => option.long).join(' and/or ')}`);
      }
      checkColumns(showColumns(noun, noun.attributes), flags);
      const client = clientFor(cmd);
      const { id } = await client.find(noun, nameOrId);
      showOne(noun, await client.update(noun, id, changes), flags);
    });

  command.command('delete').description(`delete ${noun.label}s${deleteCascade(noun)}`)
    .argument(`<${noun.kind}...>`, `names or IDs of the ${noun.label}s`)
    .addHelpText('after', `\nExamples:\n${examples.delete}`)
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

export function registerResources(program: Command): void {
  registerNoun(program, 'port', PORT, {
    create: '  tapas port create vm1-port --interface tap0\n  tapas port create web --interface veth1a2b --netns host1 -f value -c ID',
    list: '  tapas port list\n  tapas port list --name vm1-port -f value -c ID',
    show: '  tapas port show vm1-port\n  tapas port show vm1-port -f json',
    update: '  tapas port update vm1-port --description "web server, eth0"',
    delete: '  tapas port delete vm1-port vm2-port',
  }, 'ports: registered interfaces, each facing one VM or container');

  const tap = program.command('tap').configureHelp({ ...program.configureHelp(), showGlobalOptions: true }).summary('tap services, tap flows and tap mirrors (OpenStack TaaS)')
    .description('Tap-as-a-Service resources: a tap service receives copies, a tap flow sends a port\'s traffic to a tap service, '
      + 'a tap mirror sends a port\'s traffic to a remote collector in GRE, ERSPAN (type II or III) or VXLAN.')
    .addHelpText('after', `
Examples:
  tapas tap service create --name ts_0 --port monitor-port
  tapas tap flow create --name tf_0 --port vm1-port --tap-service ts_0 --direction BOTH
  tapas tap mirror create --name tm_0 --port vm1-port --directions IN=101 --directions OUT=102 \\
      --remote-ip 192.0.2.10 --mirror-type erspanv1`);

  registerNoun(tap, 'service', TAP_SERVICE, {
    create: '  tapas tap service create --name ts_0 --port monitor-port',
    list: '  tapas tap service list\n  tapas tap service list -f json',
    show: '  tapas tap service show ts_0 -c Status -f value',
    update: '  tapas tap service update ts_0 --name ids-feed',
    delete: '  tapas tap service delete ts_0',
  }, 'tap services: where mirrored traffic goes');

  registerNoun(tap, 'flow', TAP_FLOW, {
    create: '  tapas tap flow create --name tf_0 --port vm1-port --tap-service ts_0 --direction BOTH\n'
      + '  tapas tap flow create --port trunk-port --tap-service ts_0 --direction OUT --vlan-filter 1-5,9',
    list: '  tapas tap flow list\n  tapas tap flow list -c Name -c Status -f value',
    show: '  tapas tap flow show tf_0',
    update: '  tapas tap flow update tf_0 --description "vm1, both ways"',
    delete: '  tapas tap flow delete tf_0',
  }, 'tap flows: a port\'s traffic, one or both ways, copied to a tap service');

  registerNoun(tap, 'mirror', TAP_MIRROR, {
    create: '  tapas tap mirror create --name tm_0 --port vm1-port --directions IN=101 --directions OUT=102 \\\n'
      + '      --remote-ip 192.0.2.10 --mirror-type erspanv1\n'
      + '  tapas tap mirror create --port vm1-port --directions BOTH=7 --remote-ip 192.0.2.10 --mirror-type erspanv2\n'
      + '  tapas tap mirror create --port vm1-port --directions BOTH=5000 --remote-ip 192.0.2.10 --mirror-type vxlan --udp-port 4790',
    list: '  tapas tap mirror list',
    show: '  tapas tap mirror show tm_0 -f json',
    update: '  tapas tap mirror update tm_0 --name to-ids',
    delete: '  tapas tap mirror delete tm_0',
  }, 'tap mirrors: a port\'s traffic sent in GRE or ERSPAN to a remote collector');
}
