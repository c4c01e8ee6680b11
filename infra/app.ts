/**
 * CDK entry (`npx cdk synth`, `npx cdk deploy`): context → validated configuration → one stack,
 * checked by cdk-nag's AWS Solutions rules. A configuration error prints every problem at once
 * and exits 1, without a stack trace: it is the user's input, not a bug.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { BackupStack } from './backup-stack.ts';
import { InfraConfigError, parseConfig } from './config.ts';
import { LayerNotBuiltError } from './constructs/pg-dump-layer.ts';

export interface BuildAppOptions {
  /** Extra context (tests); the CLI passes cdk.json and `-c` values through the environment. */
  readonly context?: Record<string, unknown>;
  readonly outdir?: string;
  readonly layerDir?: string;
  readonly entry?: string;
  /** The pg-server layer tree (tests pass a fixture). */
  readonly serverLayerDir?: string;
  readonly drillEntry?: string;
  /** The day the DST check starts from (default: now). */
  readonly now?: Date;
}

export function buildApp(options: BuildAppOptions = {}): { app: App; stack: BackupStack } {
  const app = new App({
    ...(options.context ? { context: options.context } : {}),
    ...(options.outdir ? { outdir: options.outdir } : {}),
  });
  // Server access logs are delivered under a bucket policy, not the legacy LogDeliveryWrite ACL
  // (ACLs are disabled on every bucket here). Set in code so tests and `cdk synth` agree.
  app.node.setContext('@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy', true);
  const config = parseConfig(app.node.getAllContext(), options.now ? { now: options.now } : {});
  const stack = new BackupStack(app, config.stackName, {
    config,
    ...(config.env ? { env: config.env } : {}),
    ...(options.layerDir ? { layerDir: options.layerDir } : {}),
    ...(options.entry ? { entry: options.entry } : {}),
    ...(options.serverLayerDir ? { serverLayerDir: options.serverLayerDir } : {}),
    ...(options.drillEntry ? { drillEntry: options.drillEntry } : {}),
    description: 'pg-s3-backup: nightly PostgreSQL backups to S3 (Lambda, EventBridge Scheduler, SNS alerts)',
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
  return { app, stack };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    buildApp().app.synth();
  } catch (err) {
    if (err instanceof InfraConfigError || err instanceof LayerNotBuiltError) {
      console.error(`pg-s3-backup: ${err.message}`);
      process.exit(1);
    }
    throw err;
  }
}
