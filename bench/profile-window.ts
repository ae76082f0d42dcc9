/**
 * `node dist/bench/profile-window.js PROFILE.cpuprofile [RESULTS.json idle|requests] [--top N]`
 *
 * Where a V8 CPU profile (node --cpu-prof) spent its time, cut to one window
 * of an idle-daemon run (its `monotonicUs`, the profile's clock) or whole:
 * the functions by self time and by total time (self plus what they called),
 * each as % of one core over the window.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function main(): void {
  const args = process.argv.slice(2);
  let top = 25;
  const topAt = args.indexOf('--top');
  if (topAt >= 0) {
    top = Number(args[topAt + 1]);
    args.splice(topAt, 2);
  }
  const [profileFile, resultsFile, windowName] = args;
  if (!profileFile) {
    process.stderr.write('usage: profile-window PROFILE.cpuprofile [RESULTS.json idle|requests] [--top N]\n');
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(profileFile, 'utf8')) as Profile;
  let from = profile.startTime;
  let to = profile.endTime;
  if (resultsFile) {
    const results = JSON.parse(readFileSync(resultsFile, 'utf8')) as Record<string, { monotonicUs?: [number, number] }>;
    const span = results[windowName ?? 'idle']?.monotonicUs;
    if (!span) throw new Error(`${resultsFile} has no ${windowName ?? 'idle'}.monotonicUs`);
    [from, to] = span;
  }

  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const label = (node: ProfileNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url.replace(/^.*\/(dist|node_modules)\//, '$1/');
    return `${functionName || '(anonymous)'} ${file}:${lineNumber + 1}`;
  };

  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let time = profile.startTime;
  let counted = 0;
  for (let i = 0; i < profile.samples.length; i += 1) {
    time += profile.timeDeltas[i] ?? 0;
    if (time < from || time > to) continue;
    // A sample stands for the time until the next one.
    const next = time + (profile.timeDeltas[i + 1] ?? 0);
    const us = Math.max(0, Math.min(next, to) - time);
    const leaf = byId.get(profile.samples[i]!)!;
    if (leaf.callFrame.functionName === '(idle)') continue;
    counted += us;
    const leafLabel = label(leaf);
    self.set(leafLabel, (self.get(leafLabel) ?? 0) + us);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const name = label(byId.get(id)!);
      if (seen.has(name)) continue;
      seen.add(name);
      total.set(name, (total.get(name) ?? 0) + us);
    }
  }
  const seconds = (to - from) / 1e6;
  const pct = (us: number) => `${((100 * us) / 1e6 / seconds).toFixed(2).padStart(6)} %`;
  process.stdout.write(`window ${seconds.toFixed(1)} s, busy ${pct(counted)} of one core\n\nself:\n`);
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(us)}  ${name}\n`);
  process.stdout.write('\ntotal:\n');
  for (const [name, us] of [...total].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(us)}  ${name}\n`);
}

main();
