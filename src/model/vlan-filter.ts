/** A parsed TaaS vlan_filter: inclusive [low, high] ranges of 802.1Q VLAN ids. */
export type VlanRanges = Array<[number, number]>;

export class VlanFilterError extends Error {}

const MIN_VLAN = 1;
const MAX_VLAN = 4094;

/**
 * Parses the TaaS vlan_filter syntax ("1-5,9,18-27"). Rejects anything else,
 * including empty items (a trailing comma), ids outside 1–4094 and ranges whose
 * low end is above the high end.
 */
export function parseVlanFilter(text: string): VlanRanges {
  if (text.trim() === '') throw new VlanFilterError('vlan_filter must not be empty');
  return text.split(',').map((item) => {
    const match = /^\s*(\d{1,4})\s*(?:-\s*(\d{1,4})\s*)?$/.exec(item);
    if (!match) throw new VlanFilterError(`invalid vlan_filter item '${item}': expected N or N-M`);
    const low = Number(match[1]);
    const high = match[2] === undefined ? low : Number(match[2]);
    if (low < MIN_VLAN || high > MAX_VLAN) {
      throw new VlanFilterError(`VLAN ids in vlan_filter must be between ${MIN_VLAN} and ${MAX_VLAN}, got '${item.trim()}'`);
    }
    if (low > high) throw new VlanFilterError(`invalid vlan_filter range '${item.trim()}': ${low} > ${high}`);
    return [low, high] as [number, number];
  });
}
