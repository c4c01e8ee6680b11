/**
 * Owner files of downloaded dumps and throwaway servers (engine/restore/leftovers.ts) as a sweep
 * beside a live run sees them. The full version matrix (`npm run test:versions`, cells running
 * concurrently) failed `PostgreSQL 16 → PostgreSQL 16 › shop_icu_rules` with `verify
 * --scratch-url`'s own download gone: `ENOENT … open '<tmp>/pgs3-dump-…/backup.dump'`. A restore
 * starting beside it swept the folder while its owner file was still being written: the file
 * exists, empty, between writeFileSync's open and its write, and an empty owner read as pid 0,
 * "owner gone".
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { DUMP_DIR_PREFIX, markOwner, sweepStaleDumps } from '../../../engine/restore/leftovers.ts';
import { SERVER_DIR_PREFIX, sweepStaleServers, UNOWNED_GRACE_MS } from '../../../engine/restore/throwaway-server.ts';

let parent: string;
beforeEach(() => {
  parent = mkdtempSync(join(tmpdir(), 'pgs3b-leftovers-'));
});
afterEach(() => {
  rmSync(parent, { recursive: true, force: true });
});

const dumpDir = (name: string) => {
  const dir = join(parent, `${DUMP_DIR_PREFIX}${name}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'backup.dump'), 'PGDMP');
  return dir;
};

it('leaves alone a dump folder whose owner file is still being written (empty), as a run beside it sees it', () => {
  const writing = dumpDir('writing');
  writeFileSync(join(writing, 'owner'), '');
  const partial = dumpDir('partial');
  writeFileSync(join(partial, 'owner'), `${process.pid}`);
  expect(sweepStaleDumps(parent)).toEqual([]);
  expect(readdirSync(parent).sort()).toEqual([`${DUMP_DIR_PREFIX}partial`, `${DUMP_DIR_PREFIX}writing`]);
});

it('still removes the folder of an owner that is gone, and never a live one', () => {
  const dead = dumpDir('dead');
  // Above any pid_max: no such process.
  writeFileSync(join(dead, 'owner'), '999999999 -\n');
  const live = dumpDir('live');
  markOwner(live);
  expect(sweepStaleDumps(parent)).toEqual([dead]);
  expect(readdirSync(parent)).toEqual([`${DUMP_DIR_PREFIX}live`]);
});

it('markOwner puts the whole owner file in place at once, leaving nothing else behind', () => {
  const dir = dumpDir('mine');
  markOwner(dir);
  expect(readdirSync(dir).sort()).toEqual(['backup.dump', 'owner']);
  expect(readFileSync(join(dir, 'owner'), 'utf8')).toMatch(new RegExp(`^${process.pid} \\d+\\n$`));
});

it('a server folder a run beside the sweep has just made (no owner file yet) is left alone; an old unowned one is a leftover', () => {
  // startThrowawayServer makes its folder, then marks it: a drill or `verify --local` sweeping at
  // that instant removed the other's brand-new server folder.
  const fresh = join(parent, `${SERVER_DIR_PREFIX}fresh`);
  mkdirSync(fresh);
  const old = join(parent, `${SERVER_DIR_PREFIX}old`);
  mkdirSync(old);
  const past = (Date.now() - UNOWNED_GRACE_MS - 60_000) / 1000;
  utimesSync(old, past, past);
  expect(sweepStaleServers(parent)).toEqual([old]);
  expect(existsSync(fresh)).toBe(true);
});
