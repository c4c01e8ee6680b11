/**
 * The AWS APIs the suite needs (S3, Secrets Manager, SNS, SQS): a moto server started per test
 * file (`python3 -m moto.server`) on a free loopback port, an existing endpoint through
 * `AWS_ENDPOINT_URL` (LocalStack, a shared moto), or with `TEST_SERVICES=containers` a LocalStack
 * container through testcontainers (where a Docker engine exists).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './postgres.ts';

export interface TestAws {
  /** Endpoint URL of the S3/SNS/SQS/Secrets Manager API. */
  readonly endpoint: string;
  stop(): Promise<void>;
}

export async function startMoto(): Promise<TestAws> {
  const external = process.env.AWS_ENDPOINT_URL;
  if (external) return { endpoint: external, stop: async () => {} };
  if (process.env.TEST_SERVICES === 'containers') return startLocalStack();
  const port = await freePort();
  let child: ChildProcess;
  let stderr = '';
  try {
    child = spawn('python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new Error(`cannot start moto: ${String(err)}. ${HOW_TO}`, { cause: err });
  }
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const endpoint = `http://127.0.0.1:${port}`;
  const exited = new Promise<never>((_, reject) => {
    child.once('error', (err) => reject(new Error(`cannot start moto (python3 -m moto.server): ${err.message}. ${HOW_TO}`)));
    child.once('exit', (code) => reject(new Error(`moto server exited with code ${code} before answering:\n${stderr}\n${HOW_TO}`)));
  });
  exited.catch(() => {});
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const res = await Promise.race([fetch(`${endpoint}/moto-api/reset`, { method: 'POST' }), exited]);
      if (res.ok) break;
    } catch (err) {
      if ((err as Error).message.startsWith('moto server exited') || (err as Error).message.startsWith('cannot start moto')) throw err;
      if (Date.now() > deadline) throw new Error(`moto server did not answer on ${endpoint} within 30 s:\n${stderr}\n${HOW_TO}`, { cause: err });
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    endpoint,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

const HOW_TO =
  'The tests need moto 5 with its server extras: `apt-get install python3-moto` (Debian) or `pip install "moto[server]"`, ' +
  'or set AWS_ENDPOINT_URL to a running S3/SNS/SQS/Secrets Manager emulator.';

interface LocalStackModule {
  LocalstackContainer: new (image: string) => { start(): Promise<{ getConnectionUri(): string; stop(): Promise<unknown> }> };
}

async function startLocalStack(): Promise<TestAws> {
  // Loaded by name: the package is only needed (and installed) where Docker runs the suite.
  const moduleName = '@testcontainers/localstack';
  let mod: LocalStackModule;
  try {
    mod = (await import(moduleName)) as LocalStackModule;
  } catch (err) {
    throw new Error('TEST_SERVICES=containers needs `npm i -D @testcontainers/localstack` and a Docker engine', { cause: err });
  }
  const container = await new mod.LocalstackContainer(process.env.LOCALSTACK_IMAGE ?? 'localstack/localstack:4').start();
  return { endpoint: container.getConnectionUri(), stop: async () => void (await container.stop()) };
}
