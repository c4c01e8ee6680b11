/**
 * Failures that happen before (or around) a backup, reported where they can be: the SNS alert
 * (ALERT_TOPIC_ARN) and the heartbeat's `/fail` (HEARTBEAT_URL), each used when it parses on its
 * own, since the configuration as a whole may be what failed. `run` reports its configuration
 * errors through here; `pg-s3-backup alert` lets host mode (scripts/backup.sh) report the failures
 * it meets itself: another run holding the lock, an env file refused, the CLI killed.
 */
import type { Command } from 'commander';
import { hostname } from 'node:os';
import { ALL_DATABASES } from '../engine/backup/backup.ts';
import { createAlerts } from '../engine/alerts/alerts.ts';
import { alertChannels } from '../engine/config.ts';
import { awsClientOptions, DEFAULT_AWS_TIMEOUTS, ensureHomeForAwsSdk } from '../engine/deps.ts';
import { PgS3BackupError } from '../engine/errors.ts';
import { formatFailure, subjectText, SUBJECT_PREFIX, type Message } from '../engine/notify.ts';
import { SNSClient } from '@aws-sdk/client-sns';
import type { CliContext } from './context.ts';
import { EXIT, ExitCode } from './options.ts';

export interface FailureDelivery {
  /** null: no usable ALERT_TOPIC_ARN; false: SNS did not take it. */
  readonly alerted: boolean | null;
  /** null: no usable HEARTBEAT_URL; false: the ping failed or timed out. */
  readonly pinged: boolean | null;
}

/** Publishes `message` and pings `<HEARTBEAT_URL>/fail`, each if configured; never throws. */
export async function deliverFailure(ctx: CliContext, message: Message): Promise<FailureDelivery> {
  const channels = alertChannels(ctx.env);
  const text = { subject: ctx.out.redact(message.subject), body: ctx.out.redact(message.body) };
  // Not ctx.deps(): that needs a configuration that loads, and this may be reporting that it does not.
  // Each alert setting that parses on its own is used (ALERT_TIMEOUT_SECONDS too); the AWS timeouts are the documented defaults.
  ensureHomeForAwsSdk();
  const sns = new SNSClient(awsClientOptions(DEFAULT_AWS_TIMEOUTS));
  const delivery = await createAlerts(channels, { sns, events: ctx.events }).send({ kind: 'run failed', message: text });
  return { alerted: delivery.sns ?? null, pinged: delivery.heartbeat ?? null };
}

/** The alert for a configuration error of `run`, worded as the pipeline words its own. */
export function configFailureMessage(err: PgS3BackupError, startedAt: Date): Message {
  return formatFailure({ database: ALL_DATABASES, stage: err.stage, error: err, startedAt, failedAt: new Date(), redact: (t) => t });
}

/** The alert for a failure host mode met itself (the backup did not run, or its CLI died). */
export function hostFailureMessage(stage: string, text: string, host = hostname()): Message {
  return {
    subject: subjectText(`${SUBJECT_PREFIX} FAILED host backup on ${host}: ${stage}`),
    body: [
      `pg-s3-backup host mode on ${host}: the backup FAILED at stage "${stage}".`,
      '',
      `Error: ${text}`,
      '',
      'Existing backups were not pruned. The message above says what to fix; the next scheduled run retries.',
      `Time: ${new Date().toISOString()}`,
    ].join('\n'),
  };
}

interface AlertOpts {
  readonly stage: string;
  readonly message: string;
}

export function registerAlert(program: Command, ctx: CliContext): void {
  program
    .command('alert')
    .description(
      'report a failure that happened outside a run (host mode uses it: lock held, env file refused, the CLI killed): ' +
        'publish it to ALERT_TOPIC_ARN and ping HEARTBEAT_URL/fail, each if set; exit 1 if neither took it',
    )
    .requiredOption('--stage <name>', 'where it failed, e.g. lock, config, run')
    .requiredOption('--message <text>', 'what happened and what to do')
    .action(async (opts: AlertOpts) => {
      const delivery = await deliverFailure(ctx, hostFailureMessage(opts.stage, opts.message));
      ctx.out.result(delivery, `alert: ${describeDelivery(delivery)}`);
      if (delivery.alerted !== true && delivery.pinged !== true) throw new ExitCode(EXIT.failure);
    });
}

export function describeDelivery(d: FailureDelivery): string {
  const sns = d.alerted === null ? 'no ALERT_TOPIC_ARN' : d.alerted ? 'published to ALERT_TOPIC_ARN' : 'NOT published (SNS failed, see above)';
  const hb = d.pinged === null ? 'no HEARTBEAT_URL' : d.pinged ? 'heartbeat /fail sent' : 'heartbeat NOT sent (see above)';
  return `${sns}; ${hb}`;
}
