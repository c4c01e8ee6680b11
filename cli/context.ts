/**
 * What every CLI command gets: its output, the environment, and lazily (only when a command needs
 * them) the configuration, the S3 store and the pg tools. Side effects come in through `CliIo`,
 * so tests can run the program in-process with their own streams, environment and clock.
 */
import type { LambdaClient } from '@aws-sdk/client-lambda';
import type { DoctorClients } from './doctor-aws.ts';
import type { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import type { RemoteTaskClients } from '../engine/restore/remote-task.ts';
import { tmpdir } from 'node:os';
import { parseKey } from '../engine/store/backup-key.ts';
import { createStore } from '../engine/store/create.ts';
import { loadConfig, type Config, type Env } from '../engine/config.ts';
import { createDeps, type Deps } from '../engine/deps.ts';
import { metricsPublisher } from '../engine/cloudwatch-metrics.ts';
import { UsageError, PgS3BackupError } from '../engine/errors.ts';
import type { EventSink } from '../engine/events.ts';
import { parseTargetUrl, withConnectionDefaults, type PgConnection } from '../engine/pg/connection.ts';
import { resolvePgTool } from '../engine/pg/tools.ts';
import type { BackupStore } from '../engine/store/store.ts';
import type { RestoreDeps } from '../engine/restore/deps.ts';
import { cliEvents } from './events.ts';
import { Output, type Stream } from './output.ts';
import { loadIdentities, type IdentitySource } from '../engine/encryption.ts';
import { LOCAL_PG_TOOLS } from './pg-tool.ts';


/** The AWS clients of `restore --remote` / `verify --remote` (cli/remote.ts). */
export interface RemoteClients extends RemoteTaskClients {
  readonly cloudformation: Pick<CloudFormationClient, 'send'>;
}

/** What tests give instead of AWS: any of the remote clients, and the pause between two polls. */
export type RemoteDeps = Partial<RemoteClients> & { readonly pollMs?: number };

export interface CliIo {
  readonly stdout: Stream & { readonly isTTY?: boolean };
  readonly stderr: Stream;
  readonly env: Env;
  readonly now?: () => number;
  /** The Lambda client `invoke` uses (tests inject one; default: a real client). */
  readonly lambda?: () => Pick<LambdaClient, 'send'>;
  /** AWS clients `doctor` uses (tests inject them; default: real clients). */
  readonly aws?: Partial<DoctorClients>;
  /** AWS clients `restore --remote` / `verify --remote` use (tests inject them; default: real clients). */
  readonly remote?: RemoteDeps;
  /** Aborted on SIGTERM/SIGINT (reason: an InterruptedError): commands stop and clean up. */
  readonly signal?: AbortSignal | undefined;
  /**
   * Where the AWS SDK reads AWS_REGION and AWS_PROFILE: the process's environment (the real
   * program passes process.env). `--region` and `--profile` are written there; without it they
   * reach only the configuration (tests running the program in-process inject their clients).
   */
  readonly sdkEnv?: NodeJS.ProcessEnv | undefined;
}

/** The variables of the global options the AWS SDK itself reads. */
const SDK_VARIABLES = ['AWS_REGION', 'AWS_PROFILE'] as const;

export class CliContext {
  readonly out: Output;
  /** Where the engine reports: the CLI's lines (cli/events.ts). */
  readonly events: EventSink;
  private envValue: Env;
  private readonly sdkEnv: NodeJS.ProcessEnv | undefined;
  readonly now: () => number;
  private config: Config | undefined;
  private depsValue: Deps | undefined;
  private storeValue: BackupStore | undefined;
  readonly lambda: (() => Pick<LambdaClient, 'send'>) | undefined;
  readonly aws: Partial<DoctorClients> | undefined;
  readonly remote: RemoteDeps | undefined;
  /** Never aborted when the caller gave none (tests running the program in-process). */
  readonly signal: AbortSignal;

  constructor(io: CliIo) {
    this.envValue = io.env;
    this.sdkEnv = io.sdkEnv;
    this.signal = io.signal ?? new AbortController().signal;
    this.lambda = io.lambda;
    this.aws = io.aws;
    this.remote = io.remote;
    this.now = io.now ?? Date.now;
    this.out = new Output({ stdout: io.stdout, stderr: io.stderr, tty: io.stdout.isTTY === true, now: this.now });
    this.out.addSecret(passwordOf(io.env.DATABASE_URL));
    this.events = cliEvents(this.out);
  }

  /** The environment, with the global options' variables (`--bucket` is BACKUP_BUCKET, …) over it. */
  get env(): Env {
    return this.envValue;
  }

  /**
   * Sets variables for this command (the global options: main.ts GLOBAL_OPTIONS), winning over
   * the environment; called before the command's action reads any configuration.
   */
  useVariables(variables: Readonly<Record<string, string>>): void {
    if (Object.keys(variables).length === 0) return;
    this.envValue = { ...this.envValue, ...variables };
    for (const name of SDK_VARIABLES) {
      const value = variables[name];
      if (value !== undefined && this.sdkEnv) this.sdkEnv[name] = value;
    }
    this.config = undefined;
    this.depsValue = undefined;
  }

  /**
   * The shared configuration. Commands that only read the bucket (list, restore, verify, prune)
   * do not need database credentials: they load it with `requireCredentials: false`.
   */
  cfg(options: { readonly needsCredentials: boolean }): Config {
    if (this.config && (this.config.credentials.kind !== 'none' || !options.needsCredentials)) return this.config;
    this.config = loadConfig(this.env, { requireCredentials: options.needsCredentials });
    return this.config;
  }

  /**
   * The engine's dependencies (real AWS clients honouring AWS_ENDPOINT_URL*), with the engine's
   * events shown as CLI progress and JSON lines (cli/events.ts); no Powertools logs or EMF metrics
   * (they are for CloudWatch, not a terminal).
   */
  deps(options: { readonly needsCredentials: boolean } = { needsCredentials: false }): Deps {
    if (this.depsValue) return this.depsValue;
    const config = this.cfg(options);
    // Off Lambda the engine's metrics reach CloudWatch only through the API (CLOUDWATCH_METRICS: the Fargate runner).
    this.depsValue = createDeps(config, { events: this.events, pgTools: LOCAL_PG_TOOLS, publishMetrics: metricsPublisher(config, this.events) });
    return this.depsValue;
  }

  store(): BackupStore {
    this.storeValue ??= createStore(this.cfg({ needsCredentials: false }), this.deps());
    return this.storeValue;
  }


  /** A `postgresql://` URL option: parsed, its password registered for redaction, PGPASSWORD as fallback. */
  target(url: string, option: string): PgConnection {
    this.out.addSecret(passwordOf(url));
    // PG_CONNECT_TIMEOUT bounds the wait where the URL sets no connect_timeout, as for the backup.
    const target = withConnectionDefaults(parseTargetUrl(url, option), this.cfg({ needsCredentials: false }));
    if (target.password === undefined && this.env.PGPASSWORD) {
      this.out.addSecret(this.env.PGPASSWORD);
      return { ...target, password: this.env.PGPASSWORD };
    }
    return target;
  }

  restoreDeps(tempDir: string | undefined, identity: { readonly identityFile?: string; readonly identitySecret?: string } = {}): RestoreDeps {
    const store = this.store();
    const config = this.cfg({ needsCredentials: false });
    // The options win over AGE_IDENTITY_FILE / AGE_IDENTITY_SECRET_ARN. Only paths and ARNs pass
    // through argv; the identities are read here, and registered so that no output shows them.
    const source: IdentitySource | undefined =
      identity.identityFile !== undefined ? { kind: 'file', path: identity.identityFile }
        : identity.identitySecret !== undefined ? { kind: 'secret', secretId: identity.identitySecret }
          : config.identity;
    const identities = source
      ? async () => {
          const ids = await loadIdentities(source, () => this.deps().secrets, (warning) => this.out.warn(warning));
          for (const id of ids) this.out.addSecret(id);
          return ids;
        }
      : undefined;
    return {
      source: store,
      identities,
      pgRestore: resolvePgTool('pg_restore', { ...LOCAL_PG_TOOLS, pgDumpBin: this.env.PG_DUMP_BIN?.trim() || undefined }),
      tempDir: tempDir ?? tmpdir(),
      now: this.now,
      events: this.events,
      env: this.env,
      signal: this.signal,
    };
  }

  /**
   * The dump key a restore or verify works on: `--key` (a dump or manifest key of this layout), or
   * the newest complete backup of `--database` (which may be left out when the bucket holds one
   * database only).
   */
  async selectBackup(options: { readonly latest?: boolean; readonly key?: string; readonly database?: string }): Promise<string> {
    if (Boolean(options.latest) === (options.key !== undefined)) {
      throw new UsageError('give exactly one of --latest and --key KEY', { hint: 'pg-s3-backup list shows the keys.' });
    }
    const store = this.store();
    if (options.key !== undefined) {
      const parsed = parseKey(store.prefix, options.key);
      if (!parsed) {
        throw new UsageError(`--key ${options.key} is not a backup key under the prefix "${store.prefix}"`, {
          hint: 'Copy a key from pg-s3-backup list (and check BACKUP_PREFIX).',
        });
      }
      if (options.database !== undefined && parsed.database !== options.database) {
        throw new UsageError(`--key belongs to database "${parsed.database}", not --database "${options.database}"`);
      }
      return parsed.dumpKey;
    }
    let database = options.database;
    if (database === undefined) {
      const all = await store.listDatabases();
      if (all.length !== 1) {
        throw new UsageError(all.length === 0 ? `no backups under s3://${store.bucket}/${store.prefix}` : `--latest needs --database: the bucket holds backups of ${all.map((d) => JSON.stringify(d)).join(', ')}`, {
          hint: 'Pass --database NAME (pg-s3-backup list shows them); check BACKUP_BUCKET and BACKUP_PREFIX.',
        });
      }
      database = all[0]!;
    }
    // The newest by its own time (backupTime) whose manifest can be trusted; newer ones that cannot are named.
    const { backup, skipped } = await store.latestBackup(database);
    for (const b of skipped) this.out.warn(`--latest skipped ${b.key}: ${b.problem}`);
    if (!backup) {
      throw new PgS3BackupError('list', `no complete backup of database "${database}" in s3://${store.bucket}/${store.prefix}${skipped.length ? ` (${skipped.length} with an unreadable manifest)` : ''}`, {
        hint: 'Check the database name, BACKUP_BUCKET and BACKUP_PREFIX (pg-s3-backup list --all shows incomplete ones too).',
      });
    }
    return backup.key;
  }
}

function passwordOf(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    const p = new URL(url).password;
    return p ? decodeURIComponent(p) : undefined;
  } catch {
    return undefined;
  }
}
