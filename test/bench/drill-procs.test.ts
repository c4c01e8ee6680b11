/** The drill bench's process-tree walk (bench/drill.ts): what is counted as the drill's memory. */
import { expect, it } from 'vitest';
import { descendants, listProcesses, programOf, type ProcSample } from '../../bench/drill.ts';

const procs: ProcSample[] = [
  { pid: 1, ppid: 0, comm: 'init' },
  { pid: 10, ppid: 1, comm: 'node' },
  { pid: 11, ppid: 10, comm: 'postgres' }, // the source server: excluded with its backends
  { pid: 12, ppid: 11, comm: 'postgres' },
  { pid: 20, ppid: 10, comm: 'postgres' }, // the throwaway server and its backends
  { pid: 21, ppid: 20, comm: 'postgres' },
  { pid: 30, ppid: 10, comm: 'pg_restore' },
  { pid: 31, ppid: 30, comm: 'pg_restore' },
  { pid: 40, ppid: 1, comm: 'other' },
];

it('takes the root and every descendant, leaving out the excluded subtrees and unrelated processes', () => {
  expect(descendants(procs, 10, new Set([11])).map((p) => p.pid).sort((a, b) => a - b)).toEqual([10, 20, 21, 30, 31]);
  expect(descendants(procs, 10).map((p) => p.pid).sort((a, b) => a - b)).toEqual([10, 11, 12, 20, 21, 30, 31]);
  expect(descendants(procs, 99)).toEqual([]);
});

it('reads this process and its parent from /proc', () => {
  const me = listProcesses().find((p) => p.pid === process.pid);
  expect(me?.ppid).toBe(process.ppid);
  expect(me?.comm.length).toBeGreaterThan(0);
});

it('names the program behind the layer\'s loader and a server backend\'s rewritten title', () => {
  expect(programOf('/tmp/l/lib/ld-linux-x86-64.so.2\0--preload\0/tmp/l/lib/libnss_wrapper.so\0--library-path\0/tmp/l/lib\0--argv0\0/tmp/l/bin/postgres\0/tmp/l/libexec/postgres\0-D\0/tmp/d\0', 'ld-linux-x86-64')).toBe('postgres');
  expect(programOf('/tmp/l/lib/ld-linux-x86-64.so.2\0/tmp/l/bin/pg_restore\0--list\0', 'ld-linux-x86-64')).toBe('pg_restore');
  expect(programOf('postgres: nobody postgres [local] COPY\0', 'postgres')).toBe('postgres');
  expect(programOf('/usr/bin/node\0bench.ts\0', 'node')).toBe('node');
  expect(programOf('', 'pg_restore')).toBe('pg_restore');
});
