/**
 * Restore and verify bound the wait for a server that accepts TCP and never answers, like the
 * backup does: with the URL's connect_timeout, else PG_CONNECT_TIMEOUT (they used to hard-code 15 s).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CliContext } from '../../../cli/context.ts';
import { parseTargetUrl } from '../../../engine/pg/connection.ts';
import { restoreBackup } from '../../../engine/restore/restore.ts';

let server: Server;
let port: number;
const sockets = new Set<Socket>();
beforeAll(async () => {
  // Accepts connections and never says a word: a stalled server, or a black-holing firewall.
  server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => server.close(resolve));
});

// The manifest is read first; the target is checked before any download.
const source = { readManifest: async () => ({ key: 'k' }) as never, openDump: async () => Readable.from([]) };

it('restore gives up on a silent target after the URL\'s connect_timeout', async () => {
  const target = parseTargetUrl(`postgresql://u:pw@127.0.0.1:${port}/app?connect_timeout=1&sslmode=disable`);
  const started = Date.now();
  const err = await restoreBackup({ source, pgRestore: { file: 'pg_restore', args: [] }, tempDir: '/tmp' }, { key: 'k', target }).catch((e: unknown) => e as Error);
  const ms = Date.now() - started;
  expect(err).toBeInstanceOf(Error);
  expect((err as Error).message).toMatch(/timeout/i);
  // 1 s asked for; generous for a loaded machine, far below the 15 s it used to wait.
  expect(ms).toBeLessThan(8_000);
}, 30_000);

it('the CLI gives restore and verify targets PG_CONNECT_TIMEOUT when the URL sets none', () => {
  const sink = { write: () => true };
  const ctx = new CliContext({ stdout: sink, stderr: sink, env: { BACKUP_BUCKET: 'backups', PG_CONNECT_TIMEOUT: '3' } });
  expect(ctx.target(`postgresql://u:pw@127.0.0.1:${port}/app`, '--target-url')).toMatchObject({ connectTimeoutSeconds: 3 });
  expect(ctx.target(`postgresql://u:pw@127.0.0.1:${port}/app?connect_timeout=7`, '--scratch-url')).toMatchObject({ connectTimeoutSeconds: 7 });
});
