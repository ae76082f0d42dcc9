/**
 * -w FILE with tcpdump's -C, -G and -W, shared by `tapas collect` and
 * `tapas mirror`: parsing, checks made before anything is captured, and the
 * help text. The rotation itself is native (native/pcap_rotation.h).
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Command } from 'commander';

import { type PcapRotation } from '../engine/native.js';
import { UsageError } from './errors.js';

export interface PcapCliOptions {
  write?: string;
  fileSize?: number;
  rotateSeconds?: number;
  fileCount?: number;
  pcapng?: boolean;
}

function positive(name: string, max: number) {
  return (text: string) => {
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < 1 || value > max) throw new UsageError(`${name} must be an integer from 1 to ${max}, not '${text}'`);
    return value;
  };
}

export function addPcapOptions(command: Command, what: string): Command {
  return command
    .option('-w, --write <FILE>', `write ${what} to this pcap file`)
    .option('-C, --file-size <MB>', 'with -w: a new file when the next frame would take this one past MB millions of bytes',
      positive('-C', 1_000_000))
    .option('-G, --rotate-seconds <S>', 'with -w: a new file for the first frame S seconds after the current file\'s first frame',
      positive('-G', 31_622_400))
    .option('-W, --file-count <N>', 'with -w and -C or -G: keep at most N files (FILE0 .. FILE{N-1}, round a ring)',
      positive('-W', 1_000_000))
    .option('--pcapng', 'with -w: write pcapng (the interface and the direction of every frame) instead of classic pcap');
}

export const PCAP_HELP = `
pcap files (-w FILE):
  Without -C and -G, one file FILE. With -C or -G every file is numbered, FILE
  followed by its number, counting from 0: cap.pcap0, cap.pcap1, ... With
  -W N the numbers go round a ring 0..N-1, written with as many digits as N-1
  has (-W 10: cap.pcap0..cap.pcap9; -W 100: cap.pcap00..cap.pcap99), and the
  file whose number comes round again is removed first: at most N files stay.
  -C MB: a new file when the next frame would make this one larger than MB
  millions of bytes (1,000,000, as tcpdump counts); that frame goes whole
  into the next file. -G S: a new file for the first frame S or more seconds
  after the current file's first frame (by capture time; a quiet period
  leaves no empty files).
  Every file is complete and readable on its own (its own pcap header),
  closed before the next is opened; no frame is lost at a rotation.
  --pcapng writes pcapng instead (chosen by the option, never by the file
  name): each file one section, an interface block for each interface the
  first time a frame of it is written, and per frame the interface and, where
  known, the direction (epb_flags) as the workload sees it, as TaaS names it:
  inbound = IN (into the workload), outbound = OUT.`;

/** The rotation the options ask for, checked; undefined without -w. Throws a UsageError. */
export function pcapRotation(options: PcapCliOptions): PcapRotation | undefined {
  const rotation: PcapRotation = {
    ...(options.fileSize !== undefined ? { size: options.fileSize } : {}),
    ...(options.rotateSeconds !== undefined ? { seconds: options.rotateSeconds } : {}),
    ...(options.fileCount !== undefined ? { files: options.fileCount } : {}),
  };
  if (options.write === undefined) {
    if (Object.keys(rotation).length > 0 || options.pcapng) throw new UsageError('-C, -G, -W and --pcapng go with -w FILE');
    return undefined;
  }
  if (options.write === '' || options.write.endsWith('/')) throw new UsageError(`-w needs a file name, not '${options.write}'`);
  if (rotation.files !== undefined && rotation.size === undefined && rotation.seconds === undefined) {
    throw new UsageError('-W keeps N files of a rotation: give -C MB or -G SECONDS too');
  }
  // Told before anything is captured (the native open says it too, but only
  // after the sockets are open).
  const directory = dirname(resolve(options.write));
  let isDirectory = false;
  try {
    isDirectory = statSync(directory).isDirectory();
  } catch {
    // reported below
  }
  if (!isDirectory) throw new UsageError(`cannot write '${options.write}': no directory '${directory}'`);
  try {
    accessSync(directory, constants.W_OK);
  } catch {
    throw new UsageError(`cannot write '${options.write}': the directory '${directory}' is not writable`);
  }
  return rotation;
}

/** "written 20000 frames to 5 files (3 removed)" for the final counters. */
export function filesSummary(opened: number | undefined, removed: number | undefined): string {
  if (opened === undefined) return '';
  return ` in ${opened} file${opened === 1 ? '' : 's'}` + (removed ? ` (${removed} removed by -W)` : '');
}
