/**
 * Check mode: everything a backup needs, tried without taking one — the credentials, pg_dump, each
 * database (reachable with the configured TLS, a server pg_dump can dump, privileges enough to
 * dump every table, row and large object), the bucket (a probe object, see bucket.ts) and the
 * alert topic (a real test message, marked as a check). The Lambda function runs it for
 * `{"check": true}`; `pg-s3-backup doctor --local` runs it with the CLI's configuration.
 * It never takes a backup, never prunes, never emits the BackupSucceeded metric, and publishes
 * nothing but its test message.
 */
import { PublishCommand } from '@aws-sdk/client-sns';
import { createStore } from '../store/create.ts';
import type { Config } from '../config.ts';
import type { Deps } from '../deps.ts';
import { redact } from '../observability.ts';
import { dumpHint } from '../errors.ts';
import { withClient, type ServerInfo } from '../pg/client.ts';
import { connectionFor, type PgConnection } from '../pg/connection.ts';
import { libpqEnv } from '../pg/env.ts';
import { checkServerVersion, toolCommand, toolVersion, type Version } from '../pg/pg-dump.ts';
import { describeExit, startTool } from '../pg/process.ts';
import { prepareTls } from '../pg/tls.ts';
import { fetchCredentials, type DbCredentials } from '../pg/credentials.ts';
import { SUBJECT_PREFIX } from '../notify.ts';
import { bucketChecks } from './bucket.ts';
import { describeError, fail, notChecked, pass, report, warn, type Check, type CheckReport } from './check.ts';
import { privilegeChecks, readPrivileges, type PrivilegeFacts } from './privileges.ts';

export interface CheckRequest {
  /** Overrides DATABASES, as a backup request would. */
  readonly databases?: readonly string[] | undefined;
}

export interface CheckContext {
  /** Who runs it, for the probe object and the test message: "function <request id>", "doctor --local". */
  readonly source: string;
}

export type CheckDeps = Pick<Deps, 's3' | 'secrets' | 'sns' | 'spawn' | 'now' | 'serverInfo' | 'pgTools'> & {
  /** Reads the role's privileges on one database (default: node-postgres on the configured connection). */
  readonly readPrivileges?: ((conn: PgConnection) => Promise<PrivilegeFacts & { readonly tls?: boolean | undefined }>) | undefined;
};

/** SNS message attribute that marks the check's test message, for subscription filter policies. */
export const CHECK_MESSAGE_ATTRIBUTE = { name: 'pg-s3-backup', value: 'check' } as const;

export async function runChecks(request: CheckRequest, config: Config, deps: CheckDeps, context: CheckContext): Promise<CheckReport> {
  const checks: Check[] = [];
  const secrets: string[] = [];

  const credsName = config.credentials.kind === 'url' ? 'credentials: DATABASE_URL' : 'credentials: secret readable';
  let creds: DbCredentials | undefined;
  try {
    creds = await fetchCredentials(config.credentials, deps.secrets);
    secrets.push(creds.password);
    const from = config.credentials.kind === 'secret' ? `read ${config.credentials.secretId}` : 'parsed';
    checks.push(pass(credsName, `${from}: host ${creds.host}:${creds.port}, user ${JSON.stringify(creds.username)}${creds.dbname ? `, database ${JSON.stringify(creds.dbname)}` : ''}`));
  } catch (err) {
    const { detail, fix } = describeError(err);
    checks.push(fail(credsName, detail, fix));
  }

  let pgDump: Version | undefined;
  try {
    const command = toolCommand('pg_dump', config, deps.pgTools);
    pgDump = await toolVersion(deps.spawn, command);
    checks.push(pass('pg_dump: runs', `pg_dump ${pgDump.text} (${[command.file, ...command.args].join(' ')})`));
  } catch (err) {
    const { detail, fix } = describeError(err);
    checks.push(fail('pg_dump: runs', detail, fix));
  }

  const databases = request.databases ?? config.databases ?? (creds?.dbname ? [creds.dbname] : []);
  if (!creds) {
    checks.push(notChecked('databases', `${credsName} failed`));
  } else if (databases.length === 0) {
    checks.push(fail('databases', 'no database to back up', 'Set DATABASES, or put "dbname" in the secret (or the database in DATABASE_URL).'));
  } else {
    for (const database of databases) checks.push(...(await databaseChecks(database, creds, pgDump, config, deps)));
  }

  checks.push(...(await bucketChecks(createStore(config, deps), { now: deps.now(), source: context.source, profile: config.storageProfile, maxParts: config.storageMaxParts })));
  checks.push(await topicCheck(config, deps, context));

  const clean = (t: string) => redact(t, secrets);
  return report(checks.map((c) => ({ ...c, detail: clean(c.detail), ...(c.fix !== undefined ? { fix: clean(c.fix) } : {}) })));
}

async function databaseChecks(database: string, creds: DbCredentials, pgDump: Version | undefined, config: Config, deps: CheckDeps): Promise<Check[]> {
  const db = `database ${JSON.stringify(database)}`;
  const conn = connectionFor(creds, database, config);
  const tlsText = `sslmode ${conn.sslmode}${conn.sslrootcert ? `, CA bundle ${conn.sslrootcert}` : ''}`;
  const checks: Check[] = [];
  let server: ServerInfo;
  try {
    server = await deps.serverInfo(conn);
  } catch (err) {
    const { detail, fix } = describeError(err);
    return [
      fail(`${db}: reachable`, `${detail} (${tlsText})`, fix),
      notChecked(`${db}: server version vs pg_dump`, `${db}: reachable failed`),
      notChecked(`${db}: pg_dump connects (libpq)`, `${db}: reachable failed`),
      notChecked(`${db}: privileges`, `${db}: reachable failed`),
    ];
  }

  let facts: (PrivilegeFacts & { readonly tls?: boolean | undefined }) | undefined;
  let privilegeError: unknown;
  try {
    facts = await (deps.readPrivileges ?? readPrivilegesOver)(conn);
  } catch (err) {
    privilegeError = err;
  }
  const tls = facts?.tls === undefined ? '' : facts.tls ? ', TLS in use' : ', without TLS';
  checks.push(pass(`${db}: reachable`, `connected to ${conn.host}:${conn.port} as ${JSON.stringify(conn.user)} (${tlsText}${tls}); PostgreSQL ${server.text}`));

  if (!pgDump) {
    checks.push(notChecked(`${db}: server version vs pg_dump`, 'pg_dump: runs failed'));
  } else {
    try {
      checkServerVersion(server, pgDump);
      checks.push(pass(`${db}: server version vs pg_dump`, `server ${server.text}, pg_dump ${pgDump.text}: supported`));
    } catch (err) {
      const { detail, fix } = describeError(err);
      checks.push(fail(`${db}: server version vs pg_dump`, detail, fix));
    }
  }

  checks.push(pgDump ? await libpqCheck(db, conn, tlsText, config, deps) : notChecked(`${db}: pg_dump connects (libpq)`, 'pg_dump: runs failed'));

  if (facts) checks.push(...privilegeChecks(database, facts));
  else checks.push(fail(`${db}: privileges`, `cannot read the role's privileges from the catalogs: ${describeError(privilegeError).detail}`, describeError(privilegeError).fix ?? 'Check that the role can connect and read pg_catalog.'));
  return checks;
}

/**
 * pg_dump connects through libpq, not node-postgres: its TLS (PGSSLMODE, PGSSLROOTCERT) and
 * password handling are checked by running it with the backup's environment on an empty
 * selection (`--schema-only --exclude-schema=*`: it reads the catalogs, writes a few lines).
 */
async function libpqCheck(db: string, conn: PgConnection, tlsText: string, config: Config, deps: CheckDeps): Promise<Check> {
  const name = `${db}: pg_dump connects (libpq)`;
  try {
    prepareTls(conn);
    const tool = startTool(deps.spawn, toolCommand('pg_dump', config, deps.pgTools), ['--schema-only', '--exclude-schema=*'], { env: libpqEnv(conn), redact: (t) => redact(t, conn.password ? [conn.password] : []) });
    tool.child.stdout?.resume();
    const outcome = await tool.finished;
    if (outcome.exitCode === 0 && !outcome.signal) return pass(name, `pg_dump connected and read the catalogs (${tlsText})`);
    return fail(name, `pg_dump failed: ${describeExit(outcome.exitCode, outcome.signal)}${outcome.stderrTail.length ? `: ${outcome.stderrTail.join(' | ')}` : ''}`, dumpHint(outcome));
  } catch (err) {
    const { detail, fix } = describeError(err);
    return fail(name, detail, fix);
  }
}

/** The default privilege reader: one connection, the catalog queries, and whether it is encrypted. */
async function readPrivilegesOver(conn: PgConnection): Promise<PrivilegeFacts & { tls: boolean | undefined }> {
  return withClient(conn, conn.database, async (client) => {
    const facts = await readPrivileges(client);
    // pg_stat_ssl exists from 9.5; older servers just do not say.
    const ssl = await client.query<{ ssl: boolean }>('select ssl from pg_stat_ssl where pid = pg_backend_pid()').catch(() => undefined);
    return { ...facts, tls: ssl?.rows[0]?.ssl };
  });
}

async function topicCheck(config: Config, deps: CheckDeps, context: CheckContext): Promise<Check> {
  const name = 'alerts: publish to the topic';
  if (!config.alertTopicArn) {
    const detail = 'ALERT_TOPIC_ARN is not set: a failure would only be logged';
    const fix = 'Set ALERT_TOPIC_ARN to the SNS topic that reaches your team (the stack output AlertTopicArn).';
    return config.inLambda ? fail(name, detail, fix) : warn(name, detail, fix);
  }
  const at = deps.now().toISOString();
  try {
    const res = await deps.sns.send(new PublishCommand({
      TopicArn: config.alertTopicArn,
      Subject: `${SUBJECT_PREFIX} CHECK: test message, no action needed`,
      Message: [
        'pg-s3-backup: this is a TEST message from the check (pg-s3-backup doctor), not a failure.',
        '',
        'It proves that alerts published by the backup reach this address. No action is needed.',
        '',
        `Sent by: ${context.source}`,
        `Time: ${at}`,
      ].join('\n'),
      MessageAttributes: { [CHECK_MESSAGE_ATTRIBUTE.name]: { DataType: 'String', StringValue: CHECK_MESSAGE_ATTRIBUTE.value } },
    }));
    return pass(name, `published a test message to ${config.alertTopicArn} (message id ${res.MessageId ?? '?'})`);
  } catch (err) {
    const e = err as { name?: string };
    const fix =
      e.name === 'AuthorizationError' || e.name === 'AccessDenied' || e.name === 'AccessDeniedException'
        ? 'Grant sns:Publish on the topic, and kms:GenerateDataKey and kms:Decrypt on the topic\'s KMS key.'
        : e.name === 'NotFound' || e.name === 'NotFoundException'
          ? 'Check ALERT_TOPIC_ARN (the stack output AlertTopicArn) and the region.'
          : e.name?.startsWith('KMS')
            ? 'The topic\'s KMS key refuses the function: allow kms:GenerateDataKey and kms:Decrypt in the key policy and the role.'
            : 'Check that SNS is reachable (NAT gateway or an sns VPC interface endpoint).';
    return fail(name, `cannot publish to ${config.alertTopicArn}: ${describeError(err).detail}`, fix);
  }
}
