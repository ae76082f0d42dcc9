/**
 * The boundary between JavaScript and the native engine: what it refuses to
 * read (TypeErrors naming the field and its range, changing nothing), and
 * that no C++ exception ever ends the process (a child process that runs out
 * of file descriptors gets JavaScript errors and exits normally).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

import { Engine, type Plan } from '../../src/engine/engine.js';

const run = promisify(execFile);
const ADDON = new URL('../../build/Release/tapas.node', import.meta.url).pathname;

describe('numbers and names the engine refuses to read', () => {
  const engine = new Engine();
  afterAll(() => engine.close());

  const sink = (fields: object) => ({ sources: [], sinks: [{ id: 't', remoteIp: '192.0.2.1', ...fields }], rules: [] }) as never;

  it.each([
    [{ workers: -1 }, "field 'workers' of the engine options must be an integer from 1 to 1024, not -1"],
    [{ workers: 1.5 }, "field 'workers' of the engine options must be an integer from 1 to 1024, not 1.5"],
    [{ workers: Number.NaN }, 'not NaN'],
    [{ workers: Number.POSITIVE_INFINITY }, 'not Infinity'],
    [{ workers: '3' }, 'not "3" (a string)'],
    [{ ring: { blockCount: -1 } }, "field 'blockCount' of the engine option 'ring' must be an integer from 2 to 65536, not -1"],
    [{ ring: { blockTimeoutMs: 0.5 } }, "field 'blockTimeoutMs' of the engine option 'ring' must be an integer from 0 to 1000"],
    [{ ring: { blockSize: 3 * 65536 } }, 'ring block size must be a power of two'],
    [{ ring: { version: 3, blockSize: 4096 } }, 'a TPACKET_V3 block must hold 64 KiB'],
  ])('new Engine(%j) is a TypeError', (options, message) => {
    expect(() => new Engine(options as never)).toThrow(TypeError);
    expect(() => new Engine(options as never)).toThrow(message);
  });

  it.each([
    ['a negative key', sink({ kind: 'gre', key: -1 }), "field 'key' of sinks[0] must be an integer from 0 to 4294967295, not -1"],
    ['a fractional key', sink({ kind: 'gre', key: 1.5 }), 'not 1.5'],
    ['a key given as a string', sink({ kind: 'gre', key: '3' }), "field 'key' of sinks[0] must be an integer from 0 to 4294967295, not \"3\" (a string)"],
    ['a NaN session', sink({ kind: 'erspan', session: Number.NaN }), "field 'session' of sinks[0] must be an integer from 0 to 1023, not NaN"],
    ['an infinite index', sink({ kind: 'erspan', session: 1, index: Number.POSITIVE_INFINITY }), "field 'index' of sinks[0] must be an integer from 0 to 1048575, not Infinity"],
    ['VLAN 0', {
      sources: [], sinks: [], rules: [{ id: 'r', sourceId: 's', sinkId: 'k', direction: 'IN', vlans: [[0, 5]] }],
    }, "field 'vlans[0][0]' of rules[0] must be an integer from 1 to 4094, not 0"],
    ['an interface name with a colon', { sources: [{ id: 's', ifname: 'eth0:1' }], sinks: [], rules: [] }, "field 'ifname' of sources[0] is not an interface name"],
    ['an interface name of 16 bytes', { sources: [], sinks: [{ id: 'k', kind: 'port', ifname: 'x'.repeat(16) }], rules: [] }, '1-15 bytes'],
    ['an interface name with a space', { sources: [], sinks: [], rules: [], interfaces: [{ id: 'i', ifname: 'a b' }] }, 'whitespace'],
    ['an interface name with a slash', { sources: [], sinks: [], rules: [], interfaces: [{ id: 'i', ifname: 'a/b' }] }, "'/'"],
    ['an empty interface name', { sources: [], sinks: [], rules: [], interfaces: [{ id: 'i', ifname: '' }] }, '1-15 bytes'],
    ['sources that are not an array', { sources: 'vm', sinks: [], rules: [] }, "field 'sources' of the plan must be an array"],
    ['a rule that is not an object', { sources: [], sinks: [], rules: [7] }, 'rules[0] must be an object'],
  ])('a plan with %s is a TypeError naming the field, and changes nothing', async (_, plan, message) => {
    const watched: Plan = { sources: [], sinks: [], rules: [], interfaces: [{ id: 'lo', ifname: 'lo' }] };
    await engine.apply(watched);
    const error = await engine.apply(plan as never).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toContain(message);
    expect(engine.stats().interfaces).toMatchObject([{ id: 'lo', present: true }]);
  });

  it('a plan that is not an object is a TypeError', async () => {
    await expect(engine.apply(null as never)).rejects.toThrow(TypeError);
  });
});

describe('no C++ exception ends the process', () => {
  /**
   * In a child whose descriptors run out (prlimit, then opening /dev/null until
   * EMFILE): an engine or collector that cannot start throws a JavaScript
   * error, and an engine made before applies a plan whose sockets cannot be
   * had, reporting why. The child must exit normally, not by SIGABRT.
   */
  const child = `
    const addon = require(process.argv[1]);
    const fs = require('fs');
    const out = [];
    process.stdout.write('');  // set stdout up while descriptors are there
    const engine = new addon.NativeEngine({ workers: 1 });
    const held = [];
    try { for (;;) held.push(fs.openSync('/dev/null', 'r')); } catch (error) { out.push('filled: ' + error.code); }
    try { new addon.NativeEngine({ workers: 2 }); out.push('engine: started'); }
    catch (error) { out.push('engine: ' + error.constructor.name + ': ' + error.message); }
    try { new addon.NativeCollector({ pcapPath: '/dev/null' }); out.push('collector: started'); }
    catch (error) { out.push('collector: ' + error.constructor.name + ': ' + error.message); }
    // The bpf loader: libbpf cannot open the object (or the kernel cannot make a map) without descriptors.
    try { new addon.NativeBpf({ objectPath: require('path').join(require('path').dirname(process.argv[1]), 'mirror.bpf.o') }); out.push('bpf: started'); }
    catch (error) { out.push('bpf: ' + error.constructor.name + ': ' + error.message); }
    engine.apply({ sources: [{ id: 's', ifname: 'lo' }], sinks: [], rules: [], interfaces: [{ id: 'i', ifname: 'lo' }] })
      .then(() => {
        const stats = engine.stats();
        out.push('source: ' + stats.sources[0].reason, 'interface: ' + stats.interfaces[0].reason);
      }, (error) => out.push('apply rejected: ' + error.message))
      .finally(() => {
        engine.close();
        for (const fd of held) fs.closeSync(fd);
        process.stdout.write(JSON.stringify(out));
      });
  `;

  it('without file descriptors, constructors throw JS errors, apply reports reasons, and the process exits normally', async () => {
    const { stdout } = await run('prlimit', ['--nofile=64:64', process.execPath, '--input-type=commonjs', '-e', child, ADDON]);
    const lines = JSON.parse(stdout) as string[];
    expect(lines[0]).toBe('filled: EMFILE');
    expect(lines[1]).toMatch(/^engine: Error: cannot start the engine: (epoll_create1|eventfd): Too many open files$/);
    expect(lines[2]).toMatch(/^collector: Error: .*Too many open files/);
    expect(lines[3]).toMatch(/^bpf: Error: cannot (open|load) the bpf program.*Too many open files/);
    expect(lines[4]).toMatch(/^source: .*(Too many open files|CAP_NET_RAW)/);
    expect(lines[5]).toMatch(/^interface: cannot open a socket: Too many open files$/);
  });
});
