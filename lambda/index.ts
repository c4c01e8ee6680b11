/**
 * The core's public API, for the CLI, host mode and tests (the Lambda enters via handler.ts).
 *
 *   config        loadConfig(env) → readonly Config (errors name the variable)
 *   deps          createDeps(config, overrides?) → { s3, secrets, sns, spawn, now, log, metrics, serverInfo, pageSize?, partSize?, queueSize? }
 *   backup        runBackup(request {databases?, reason?, dryRun?}, config, deps, invocation?) → RunResult
 *                 {status, backups[{database,key,bytes,sha256,durationMs}], pruned[], failures[], globals?, dryRun}
 *                 storeFor(config, deps) → S3Store
 *   s3-store      listBackups(store, db) → {complete (newest first), orphans, strayManifests}
 *                 listBackupsWithManifests · latestBackup · listDatabases · readManifest · openDump
 *                 deleteKeys(store, db, keys) (refuses keys outside <prefix><db>/)
 *   retention     planRetention(listing, {retentionCount, now}) (pure) · pruneDatabase(store, db, {retentionCount, now, dryRun?, log?})
 *   secrets       fetchCredentials(config.credentials, secretsClient) → DbCredentials · credentialsFromUrl · parseSecret
 *   pg-dump       connectionFor(creds, db, config) → PgConnection · pgEnv(conn) (allow-listed env, password only there)
 *                 toolCommand(tool, config) · startTool · describeExit · queryServerInfo · checkServerVersion
 *   notify        formatFailure · formatSuccess · publish(sns, topicArn, message, log) (never throws)
 *   observability createLogger · silentLog · createMetrics · noMetrics · redact
 *   errors        PgS3BackupError (stage, hint) and its subclasses
 */
export { runBackup, storeFor, type BackupRequest, type BackupSummary, type BackupFailure, type Invocation, type RunResult } from './backup.ts';
export { loadConfig, type Config, type Env } from './config.ts';
export { createDeps, type Deps } from './deps.ts';
export { formatFailure, formatSuccess, publish, type Message } from './notify.ts';
export { createLogger, createMetrics, noMetrics, redact, silentLog, type Log, type MetricsSink } from './observability.ts';
export { checkServerVersion, connectionFor, describeExit, pgEnv, queryServerInfo, startTool, toolCommand, type PgConnection } from './pg-dump.ts';
export { planRetention, pruneDatabase, type PruneResult, type RetentionPlan } from './retention.ts';
export {
  deleteKeys,
  latestBackup,
  listBackups,
  listBackupsWithManifests,
  listDatabases,
  openDump,
  readManifest,
  type DatabaseListing,
  type S3Store,
  type StoredBackup,
} from './s3-store.ts';
export { credentialsFromUrl, fetchCredentials, parseSecret, type DbCredentials } from './secrets.ts';
