/** The one use of Buffer in src/model/formats.ts (an interface name's length in bytes), for the browser bundle. */
const encoder = new TextEncoder();
export const Buffer = { byteLength: (text: string): number => encoder.encode(text).length };
