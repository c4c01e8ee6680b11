/**
 * The drill wired to the engine's real pieces (S3 store, SNS, metrics, logs): what the drill
 * function and the demo call. Databases: DATABASES when set, else every database in the bucket.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { tmpdir } from 'node:os';
import { storeFor } from '../backup/backup.ts';
import type { Config } from '../config.ts';
import type { Deps } from '../deps.ts';
import { publish } from '../notify.ts';
import { toolCommand } from '../pg/pg-dump.ts';
import { loadIdentities } from '../encryption.ts';
import { latestBackup, listDatabases, openDump, readManifest } from '../store/s3-store.ts';
import { runDrill, verifyReportKeyFor, type DrillDatabaseReport, type DrillRunSettings } from './drill.ts';

export async function runDrillFromConfig(config: Config, deps: Deps, settings: DrillRunSettings = {}): Promise<DrillDatabaseReport[]> {
  const store = storeFor(config, deps);
  const databases = config.databases ?? (await listDatabases(store));
  const tempDir = settings.tempDir ?? tmpdir();
  // Encrypted backups: the identity from AGE_IDENTITY_SECRET_ARN (or AGE_IDENTITY_FILE), read when
  // an encrypted backup is drilled; without one such a drill fails before any restore, saying so.
  const identity = config.identity;
  return runDrill(
    {
      restore: {
        source: { readManifest: (key) => readManifest(store, key), openDump: async (key) => (await openDump(store, key)).body },
        pgRestore: toolCommand('pg_restore', config, deps.pgTools),
        spawn: deps.spawn,
        tempDir,
        identities: identity ? () => loadIdentities(identity, () => deps.secrets, (message) => deps.events({ event: 'warning', message })) : undefined,
        // The restore's own events (a locale fallback's warning, each problem as it happens) reach
        // the function's log, not only the report.
        events: deps.events,
      },
      newestBackup: async (database) => (await latestBackup(store, database)).backup?.key,
      readManifest: (key) => readManifest(store, key),
      writeReport: async (dumpKey, body) => {
        await deps.s3.send(new PutObjectCommand({ Bucket: store.bucket, Key: verifyReportKeyFor(dumpKey), Body: body, ContentType: 'application/json' }));
      },
      alert: async (message) => {
        await publish(deps.sns, config.alertTopicArn, message, deps.events);
      },
      events: deps.events,
      freeBytes: settings.freeBytes,
    },
    { databases, server: { layerRoot: settings.serverLayerRoot, parentDir: tempDir }, jobs: settings.jobs },
  );
}
