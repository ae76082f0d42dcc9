/**
 * Output the way the OpenStack client prints it: a boxed table for people,
 * `-f json` for programs, `-f value` (bare values, one row per line) for
 * shell scripts; `-c COLUMN` (repeatable) keeps only the named columns.
 */
import { Command, Option } from 'commander';

import { UsageError } from './errors.js';

export type Format = 'table' | 'json' | 'value';
export const FORMATS: readonly Format[] = ['table', 'json', 'value'];

export interface OutputFlags {
  format: Format;
  column?: string[];
}

/** A column: the attribute it shows and its heading. */
export interface Column {
  attribute: string;
  heading: string;
}

export function addOutputOptions(command: Command): Command {
  return command
    .addOption(new Option('-f, --format <FORMAT>', 'output format').choices(FORMATS).default('table'))
    .option('-c, --column <COLUMN>', 'show only this column (repeatable; heading or attribute name)',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
}

/** A value as a person reads it: dicts as key='value', null as None (as the OpenStack client shows them). */
export function readable(value: unknown): string {
  if (value === null || value === undefined) return 'None';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (Array.isArray(value)) return value.map(readable).join(', ');
  if (typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))
      .map(([key, inner]) => `${key}='${readable(inner)}'`).join(', ');
  }
  return String(value);
}

/** The columns -c asked for, in the order asked; all of them without -c. */
export function selectColumns(columns: readonly Column[], wanted: readonly string[] = []): Column[] {
  if (wanted.length === 0) return [...columns];
  return wanted.map((name) => {
    const column = columns.find((c) => c.heading === name) ?? columns.find((c) => c.attribute === name)
      ?? columns.find((c) => c.heading.toLowerCase() === name.toLowerCase());
    if (!column) throw new UsageError(`no column '${name}': choose from ${columns.map((c) => c.heading).join(', ')}`);
    return column;
  });
}

export function table(headings: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headings.map((heading, index) => Math.max(heading.length, ...rows.map((row) => (row[index] ?? '').length)));
  const rule = `+${widths.map((width) => '-'.repeat(width + 2)).join('+')}+`;
  const line = (cells: readonly string[]) => `| ${cells.map((cell, index) => cell.padEnd(widths[index]!)).join(' | ')} |`;
  return [rule, line(headings), rule, ...rows.map(line), rule].join('\n');
}

/** One resource (`show`, `create`, `update`): Field/Value rows, or a JSON object keyed by heading. */
export function formatOne(resource: Record<string, unknown>, columns: readonly Column[], flags: OutputFlags): string {
  const shown = selectColumns(columns, flags.column);
  switch (flags.format) {
    case 'json':
      return JSON.stringify(Object.fromEntries(shown.map((c) => [c.heading, resource[c.attribute] ?? null])), null, 2);
    case 'value':
      return shown.map((c) => readable(resource[c.attribute])).join('\n');
    case 'table':
      return table(['Field', 'Value'], shown.map((c) => [c.heading, readable(resource[c.attribute])]));
  }
}

/** Several resources (`list`): a table, a JSON array of objects keyed by heading, or space-separated values. */
export function formatMany(resources: readonly Record<string, unknown>[], columns: readonly Column[], flags: OutputFlags): string {
  const shown = selectColumns(columns, flags.column);
  switch (flags.format) {
    case 'json':
      return JSON.stringify(resources.map((r) => Object.fromEntries(shown.map((c) => [c.heading, r[c.attribute] ?? null]))), null, 2);
    case 'value':
      return resources.map((r) => shown.map((c) => readable(r[c.attribute])).join(' ')).join('\n');
    case 'table':
      return table(shown.map((c) => c.heading), resources.map((r) => shown.map((c) => readable(r[c.attribute]))));
  }
}

export function print(text: string): void {
  if (text !== '') process.stdout.write(`${text}\n`);
}
