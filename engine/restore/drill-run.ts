/**
 * The drill wired to the engine's real pieces (S3 store, SNS, metrics, logs): what the drill
 * function and the demo call. Databases: DATABASES when set, else every database in the bucket.
 */
import { tmpdir } from 'node:os';
import { createSource } from '../store/create.ts';
import type { Config } from '../config.ts';
import type { Deps } from '../deps.ts';
import { toolCommand } from '../pg/pg-dump.ts';
import { loadIdentities } from '../encryption.ts';
import type { BackupSource } from '../store/store.ts';
import { runDrill, type DrillRun, type DrillRunSettings } from './drill.ts';

/**
 * The least the drill keeps of the invocation's time after its budget: stopping the running
 * restore and the throwaway server, the report and the alerts (TIME_MARGIN_SECONDS when larger).
 */
export const DRILL_MARGIN_MS = 60_000;

/**
 * The drill's order: the database whose last drill report is oldest first, never drilled first of
 * all (name order breaks ties). The reports themselves are the state: a run stopped by its time
 * budget writes none for the databases it did not reach, so the next run starts with them.
 */
export async function drillOrder(store: Pick<BackupSource, 'listBackups'>, databases: readonly string[]): Promise<string[]> {
  const last = await Promise.all(
    databases.map(async (database) => {
      try {
        const listing = await store.listBackups(database);
        const times = [...listing.complete.map((b) => b.drillReport?.lastModified), ...(listing.strayReports ?? []).map((r) => r.lastModified)]
          .flatMap((d) => (d ? [d.getTime()] : []));
        return { database, at: times.length > 0 ? Math.max(...times) : -Infinity };
      } catch {
        // Its own drill reports the listing's failure; first, so that it is not starved.
        return { database, at: -Infinity };
      }
    }),
  );
  return last.sort((a, b) => a.at - b.at || (a.database < b.database ? -1 : a.database > b.database ? 1 : 0)).map((l) => l.database);
}

export async function runDrillFromConfig(config: Config, deps: Deps, settings: DrillRunSettings = {}): Promise<DrillRun> {
  // The read side only: the drill's role reads dumps and manifests and writes its reports, nothing else.
  const store = createSource(config, deps);
  const databases = await drillOrder(store, config.databases ?? (await store.listDatabases()));
  const margin = Math.max(DRILL_MARGIN_MS, config.timeMarginMs);
  const remaining = settings.remainingTimeMs;
  const tempDir = settings.tempDir ?? tmpdir();
  // Encrypted backups: the identity from AGE_IDENTITY_SECRET_ARN (or AGE_IDENTITY_FILE), read when
  // an encrypted backup is drilled; without one such a drill fails before any restore, saying so.
  const identity = config.identity;
  return runDrill(
    {
      restore: {
        source: store,
        pgRestore: toolCommand('pg_restore', config, deps.pgTools),
        spawn: deps.spawn,
        tempDir,
        identities: identity ? () => loadIdentities(identity, () => deps.secrets, (message) => deps.events({ event: 'warning', message })) : undefined,
        // The restore's own events (a locale fallback's warning, each problem as it happens) reach
        // the function's log, not only the report.
        events: deps.events,
      },
      newestBackup: async (database) => (await store.latestBackup(database)).backup?.key,
      readManifest: (key) => store.readManifest(key),
      writeReport: (dumpKey, body) => store.writeReport(dumpKey, body),
      alert: async (message) => {
        await deps.alerts.send({ kind: 'failed', message });
      },
      events: deps.events,
      freeBytes: settings.freeBytes,
    },
    { databases, server: { layerRoot: settings.serverLayerRoot, parentDir: tempDir }, jobs: settings.jobs, timeLeftMs: remaining ? () => remaining() - margin : undefined },
  );
}
