/** Repeated measurements summarised as median with spread (min–max). */
export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const position = (sorted.length - 1) * q;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (position - low);
}

export function spread(values: number[]): Spread {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (finite.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  return { median: quantile(finite, 0.5), min: finite[0]!, max: finite[finite.length - 1]!, n: finite.length };
}
