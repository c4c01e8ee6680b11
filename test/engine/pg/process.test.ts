import { spawn } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runTool, startTool, type SpawnFn } from '../../../engine/pg/process.ts';

const sh = { file: '/bin/sh', args: ['-c'] };
const nodeSpawn = spawn as SpawnFn;
const isRoot = process.getuid?.() === 0;
const PROBE = 'PGS3_RUNNER_PROBE';

describe('the one process runner: uid/gid and an exact environment', () => {
  beforeEach(() => {
    // In our own environment, never passed: the program must not see it.
    process.env[PROBE] = 'inherited';
  });
  afterEach(() => {
    delete process.env[PROBE];
  });

  it('runs the program with exactly the environment given (nothing inherited)', async () => {
    const out = await runTool(nodeSpawn, sh, [`echo "\${${PROBE}-absent} $GIVEN"`], { env: { PATH: '/usr/bin:/bin', GIVEN: 'given' } });
    expect(out.exitCode).toBe(0);
    expect(out.stdout.trim()).toBe('absent given');
  });

  it('runs the program as the uid/gid given (root), or cannot start it (not root)', async () => {
    const options = {
      env: { PATH: '/usr/bin:/bin' },
      runAs: { uid: 65534, gid: 65534 },
      cannotStart: (err: NodeJS.ErrnoException) => new Error(`cannot start: ${err.code ?? err.message}`),
    };
    const run = runTool(nodeSpawn, sh, [`id -u; id -g; echo "\${${PROBE}-absent}"`], options);
    if (isRoot) {
      const out = await run;
      expect(out.exitCode).toBe(0);
      expect(out.stdout.trim().split('\n')).toEqual(['65534', '65534', 'absent']);
    } else {
      await expect(run).rejects.toThrow(/cannot start: EPERM/);
    }
  });

  it('the caller names the error of a program that cannot start', async () => {
    const run = runTool(nodeSpawn, { file: '/nonexistent/initdb', args: [] }, [], {
      env: {},
      cannotStart: (err) => new Error(`cannot start initdb: ${err.code}`),
    });
    await expect(run).rejects.toThrow('cannot start initdb: ENOENT');
  });

  it('stdout joins the kept tail, and a bound kills the program (SIGKILL, timedOut)', async () => {
    const done = await runTool(nodeSpawn, sh, ['echo to-stdout; echo to-stderr >&2; exit 3'], { env: {}, stdoutInTail: true, tool: 'initdb' });
    expect(done).toMatchObject({ exitCode: 3, signal: null, stdout: '', timedOut: false });
    expect([...done.stderrTail].sort()).toEqual(['to-stderr', 'to-stdout']);

    const started = Date.now();
    const slow = await runTool(nodeSpawn, sh, ['exec sleep 30'], { env: { PATH: '/usr/bin:/bin' }, timeoutMs: 200 });
    expect(slow).toMatchObject({ exitCode: null, signal: 'SIGKILL', timedOut: true });
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it('startTool keeps a long-running program as another uid/gid and reports its one outcome', async () => {
    const run = startTool(nodeSpawn, sh, ['echo ready; exec sleep 30'], { env: { PATH: '/usr/bin:/bin' }, stdoutInTail: true, ...(isRoot ? { runAs: { uid: 65534, gid: 65534 } } : {}) });
    try {
      const deadline = Date.now() + 20_000;
      while (!run.stderr.get().includes('ready') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(run.stderr.get()).toEqual(['ready']);
    } finally {
      // Stopped whatever the assertions said: nothing is left running.
      run.child.kill('SIGINT');
    }
    await expect(run.finished).resolves.toMatchObject({ exitCode: null, signal: 'SIGINT', stderrTail: ['ready'] });
  });
});
