/** Numbers as the page shows them: rates with SI prefixes, counts with separators. */

const PREFIXES = ['', 'k', 'M', 'G', 'T'];

/** 1234.5 → "1.23 k"; null → "–". */
export function si(value: number | null | undefined, unit = ''): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  let scaled = value;
  let index = 0;
  while (Math.abs(scaled) >= 1000 && index < PREFIXES.length - 1) {
    scaled /= 1000;
    index += 1;
  }
  const digits = Math.abs(scaled) >= 100 || index === 0 ? 0 : Math.abs(scaled) >= 10 ? 1 : 2;
  const text = index === 0 && !Number.isInteger(scaled) && Math.abs(scaled) < 10 ? scaled.toFixed(1) : scaled.toFixed(digits);
  const prefix = PREFIXES[index]!;
  return unit === '' ? `${text}${prefix ? ` ${prefix}` : ''}` : `${text} ${prefix}${unit}`;
}

export const packetRate = (value: number | null | undefined) => si(value, 'pkt/s');
export const bitRate = (value: number | null | undefined) => si(value, 'bit/s');

export function count(value: number | null | undefined): string {
  if (value === null || value === undefined) return '–';
  return value.toLocaleString('en-US');
}

/** Drops by cause, non-zero first: "ring 12, tx 3"; "none" when nothing was dropped. */
export function drops(byCause: Record<string, number>): string {
  const entries = Object.entries(byCause).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) return 'none';
  return entries.map(([cause, n]) => `${cause} ${count(n)}`).join(', ');
}

export const totalDrops = (byCause: Record<string, number>) => Object.values(byCause).reduce((sum, n) => sum + n, 0);

/** An id as a short handle: the first block of a UUID. */
export const shortId = (id: string) => id.split('-')[0] ?? id;

/** A resource's name, or its short id when it has none. */
export const nameOf = (resource: { name?: string; id: string } | undefined, fallback = '?') =>
  resource === undefined ? fallback : resource.name !== undefined && resource.name !== '' ? resource.name : shortId(resource.id);

const COMPACT = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });

/** An axis tick: 1500 → "1.5K". */
export const compact = (value: number) => COMPACT.format(value);

/** "1 tap service", "2 tap services". */
export const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;
