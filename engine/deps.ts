/**
 * Side effects, injected: AWS clients, process spawning, the clock, and the sink of the engine's
 * events (logs and metrics in Lambda, progress lines in the CLI). Real
 * ones come from `createDeps`; tests pass their own pieces through `overrides`.
 * AWS endpoints come only from the SDK's standard variables (AWS_ENDPOINT_URL,
 * AWS_ENDPOINT_URL_S3, …) and the region from AWS_REGION.
 */
import { listServerDatabases } from './pg/discover.ts';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SNSClient } from '@aws-sdk/client-sns';
import { spawn } from 'node:child_process';
import { homedir } from 'node:os';
import { createAlerts, type Alerts } from './alerts/alerts.ts';
import { DEFAULTS, type AlertChannels, type AwsTimeouts, type Config } from './config.ts';
import { PROFILE_CAPABILITIES, type StorageProfileSetting } from './store/capabilities.ts';
import type { EventSink } from './events.ts';
import type { BackupMetrics } from './observability.ts';
import { queryServerInfo, type ServerInfo } from './pg/client.ts';
import type { PgConnection } from './pg/connection.ts';
import type { SpawnFn } from './pg/process.ts';
import type { ToolSearch } from './pg/tools.ts';

export interface Deps {
  readonly s3: S3Client;
  readonly secrets: SecretsManagerClient;
  /** Only for what is not an alert (check mode's test message); alerts go through `alerts`. */
  readonly sns: SNSClient;
  /** Where alerts go (engine/alerts/): SNS, the heartbeat, the log, composed under ALERT_TIMEOUT_SECONDS. */
  readonly alerts: Alerts;
  readonly spawn: SpawnFn;
  /** Timestamps for keys and manifests (durations and the time budget use the real clock). */
  readonly now: () => Date;
  /** Everything the engine reports (engine/events.ts): Powertools logs and metrics by default, the CLI's lines in the CLI. */
  readonly events: EventSink;
  /** Connects and reads the server version (node-postgres). */
  readonly serverInfo: (conn: PgConnection) => Promise<ServerInfo>;
  /** Where the client tools are besides PG_DUMP_BIN (default: the layer at /opt; the CLI adds the repository's layer and PATH). */
  readonly pgTools?: Omit<ToolSearch, 'pgDumpBin'> | undefined;
  /** DATABASES=*: the server's databases (node-postgres). */
  readonly listDatabases: (conn: PgConnection) => Promise<string[]>;
  /** Multipart part size (default: `partSizeForDatabase()`, from the database's size). */
  readonly partSize?: number | undefined;
  /** Parts uploaded at once (default 2). */
  readonly queueSize?: number | undefined;
  /**
   * Off Lambda with CLOUDWATCH_METRICS: each database's backup metrics through PutMetricData,
   * awaited by the run (in Lambda the EMF lines of `events` carry them). The CLI, the front door
   * off Lambda, passes `metricsPublisher(config, events)`; the Lambda bundles never hold the client.
   */
  readonly publishMetrics?: PublishMetrics | undefined;
}

/** Sends one database's metrics; never throws (a metric that did not arrive shows as the dead-man alarm). */
export type PublishMetrics = (m: BackupMetrics) => Promise<void>;

/**
 * What callers may replace, and the one thing each must give: `events`, how the engine's events are
 * shown (the Lambda's Powertools logs and metrics, lambda/powertools.ts; the CLI's lines,
 * cli/events.ts; `ignoreEvents` where nobody reads them).
 */
export type DepsOverrides = Partial<Deps> & { readonly events: EventSink };

/** The documented defaults, for callers that have no configuration. */
export const DEFAULT_AWS_TIMEOUTS: AwsTimeouts = {
  connectTimeoutMs: DEFAULTS.awsConnectTimeoutSeconds * 1000,
  requestTimeoutMs: DEFAULTS.awsRequestTimeoutSeconds * 1000,
  socketTimeoutMs: DEFAULTS.awsSocketTimeoutSeconds * 1000,
  maxAttempts: DEFAULTS.awsMaxAttempts,
};

/**
 * Options every AWS client gets: without them the SDK waits forever on a server that accepts the
 * connection and never answers (a black-holed endpoint, a dead NAT). `throwOnRequestTimeout`
 * turns the request timeout into an error (the SDK otherwise only logs it); the socket timeout
 * also bounds a response body that stops arriving (a download).
 */
export function awsClientOptions(t: AwsTimeouts) {
  return {
    maxAttempts: t.maxAttempts,
    requestHandler: {
      connectionTimeout: t.connectTimeoutMs,
      requestTimeout: t.requestTimeoutMs,
      throwOnRequestTimeout: true,
      socketTimeout: t.socketTimeoutMs,
    },
  };
}

/**
 * The S3 client's checksum settings for a store. The SDK adds a CRC32 header to every PutObject and
 * UploadPart, and `x-amz-checksum-mode: ENABLED` to every GetObject, by default ("when supported");
 * a store that implements no checksum refuses them (400, or 501 NotImplemented). Only a profile
 * known to take them (aws, r2, minio) keeps the SDK's defaults. Every other store, and an unknown
 * one (STORAGE_PROFILE unset or auto: the probe decides), gets only what S3's API requires
 * (DeleteObjects): the engine names its own SHA-256 wherever the capabilities say the store takes
 * one, and a download is checked against the manifest's SHA-256 whatever the store says.
 */
export function s3ChecksumOptions(profile: StorageProfileSetting | undefined): { requestChecksumCalculation?: 'WHEN_REQUIRED'; responseChecksumValidation?: 'WHEN_REQUIRED' } {
  return profile !== undefined && profile !== 'auto' && PROFILE_CAPABILITIES[profile].checksumSha256
    ? {}
    : { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' };
}

/**
 * The AWS SDK looks for ~/.aws/config for every setting the environment does not give
 * (request_checksum_calculation, retry_mode, …), and asks os.homedir() for "~" first, which
 * throws (uv_os_homedir ENOENT) when HOME is unset and the uid has no passwd entry: Lambda's
 * sandbox user, `env -i`. Every S3, SNS and Secrets Manager call then fails. There is no home to
 * read a configuration from in that case, so HOME is set to a folder that does not exist: the SDK
 * finds no file and uses its defaults, as it would with an empty home. A HOME that is set, or a
 * home the system knows, is left alone.
 */
export function ensureHomeForAwsSdk(env: NodeJS.ProcessEnv = process.env): void {
  if (env.HOME || env.USERPROFILE || env.HOMEPATH) return;
  try {
    homedir();
  } catch {
    env.HOME = NO_HOME;
  }
}

/** A configuration's alert channels; without one (a store probe, a test), the log alone under the documented bounds. */
function alertSettings(config: Partial<AlertChannels>): AlertChannels {
  return {
    alertTopicArn: config.alertTopicArn,
    heartbeatUrl: config.heartbeatUrl,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs ?? DEFAULTS.heartbeatTimeoutSeconds * 1000,
    alertTimeoutMs: config.alertTimeoutMs ?? DEFAULTS.alertTimeoutSeconds * 1000,
  };
}

/** HOME when the user has none (Debian's home of `nobody`): nothing to read there. */
export const NO_HOME = '/nonexistent';

export function createDeps(config: Pick<Config, 'forcePathStyle'> & Partial<AlertChannels & Pick<Config, 'aws' | 'storageProfile'>>, overrides: DepsOverrides): Deps {
  const aws = awsClientOptions(config.aws ?? DEFAULT_AWS_TIMEOUTS);
  ensureHomeForAwsSdk();
  const sns = overrides.sns ?? new SNSClient(aws);
  const { events } = overrides;
  return {
    s3: overrides.s3 ?? new S3Client({ forcePathStyle: config.forcePathStyle, ...aws, ...s3ChecksumOptions(config.storageProfile) }),
    secrets: overrides.secrets ?? new SecretsManagerClient(aws),
    sns,
    alerts: overrides.alerts ?? createAlerts(alertSettings(config), { sns, events }),
    spawn: overrides.spawn ?? (spawn as SpawnFn),
    now: overrides.now ?? (() => new Date()),
    events,
    serverInfo: overrides.serverInfo ?? queryServerInfo,
    pgTools: overrides.pgTools,
    listDatabases: overrides.listDatabases ?? listServerDatabases,
    partSize: overrides.partSize,
    queueSize: overrides.queueSize,
    publishMetrics: overrides.publishMetrics,
  };
}
