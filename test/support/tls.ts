/**
 * A private test CA for the TLS tests, made with `openssl` in a temporary folder: a CA, a server
 * certificate it signed for the name `localhost` only (not for 127.0.0.1), and a second CA that
 * signed nothing (the "wrong CA"). `postgresFlags` turn TLS on in a test server with them.
 */
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { postgresUserIds } from './postgres.ts';

const execFileAsync = promisify(execFile);

export interface TestCertificates {
  /** The CA that signed the server's certificate. */
  readonly caFile: string;
  /** Another CA, which signed nothing the server has. */
  readonly wrongCaFile: string;
  /** The one name the server's certificate holds. */
  readonly serverName: 'localhost';
  /** `-c ssl=on -c ssl_cert_file=… -c ssl_key_file=…` for the server. */
  readonly postgresFlags: readonly string[];
  remove(): void;
}

export async function makeTestCertificates(): Promise<TestCertificates> {
  const dir = mkdtempSync(join(tmpdir(), 'pgs3b-tls-ca-'));
  // The server runs as `postgres` when the tests run as root: it must reach the files.
  chmodSync(dir, 0o755);
  const openssl = (...args: string[]) => execFileAsync('openssl', args, { cwd: dir });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'];
  try {
    await openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=pg-s3-backup test CA', ...ca);
    await openssl('req', '-x509', ...ec, '-keyout', 'wrong-ca.key', '-out', 'wrong-ca.crt', '-days', '2', '-subj', '/CN=pg-s3-backup wrong CA', ...ca);
    await openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
    writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
    await openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext');
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`openssl could not make the test certificates (apt-get install openssl): ${(err as { stderr?: string }).stderr ?? String(err)}`, { cause: err });
  }
  // PostgreSQL refuses a key others can read, and one its user cannot.
  chmodSync(join(dir, 'server.key'), 0o600);
  if (process.getuid?.() === 0) {
    const { uid, gid } = await postgresUserIds();
    for (const f of ['server.key', 'server.crt']) chownSync(join(dir, f), uid, gid);
  }
  return {
    caFile: join(dir, 'ca.crt'),
    wrongCaFile: join(dir, 'wrong-ca.crt'),
    serverName: 'localhost',
    postgresFlags: ['-c', 'ssl=on', '-c', `ssl_cert_file=${join(dir, 'server.crt')}`, '-c', `ssl_key_file=${join(dir, 'server.key')}`],
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
