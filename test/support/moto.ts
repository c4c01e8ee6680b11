/**
 * The AWS APIs the suite needs (S3, Secrets Manager, SNS, SQS): a moto server started per test
 * file (`python3 -m moto.server`, scripts/local-services.ts) on a free loopback port, an existing endpoint through
 * `AWS_ENDPOINT_URL` (LocalStack, a shared moto), or with `TEST_SERVICES=containers` a LocalStack
 * container through testcontainers (where a Docker engine exists).
 */
import { startMotoServer } from '../../scripts/local-services.ts';

export interface TestAws {
  /** Endpoint URL of the S3/SNS/SQS/Secrets Manager API. */
  readonly endpoint: string;
  stop(): Promise<void>;
}

export async function startMoto(): Promise<TestAws> {
  const external = process.env.AWS_ENDPOINT_URL;
  if (external) return { endpoint: external, stop: async () => {} };
  if (process.env.TEST_SERVICES === 'containers') return startLocalStack();
  const moto = await startMotoServer();
  return { endpoint: moto.endpoint, stop: () => moto.stop() };
}

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
