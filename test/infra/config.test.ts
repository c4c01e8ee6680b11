import { describe, expect, it } from 'vitest';
import { InfraConfigError, parseConfig } from '../../infra/config.ts';

const SECRET = 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/db-AbCdEf';
const now = new Date('2026-01-01T00:00:00Z');

function errorOf(context: Record<string, unknown>): string {
  try {
    parseConfig(context, { now });
  } catch (err) {
    expect(err).toBeInstanceOf(InfraConfigError);
    return (err as Error).message;
  }
  throw new Error('expected an InfraConfigError');
}

describe('CDK context → configuration', () => {
  it('applies the documented defaults', () => {
    const c = parseConfig({ dbSecretArn: SECRET }, { now });
    expect(c).toMatchObject({
      stackName: 'PgS3Backup',
      databases: [],
      dbPort: 5432,
      schedule: { hour: 2, minute: 0, timeZone: 'UTC', allowDstSkip: false },
      retentionCount: 7,
      backupPrefix: 'pg-s3-backup/',
      notifyOnSuccess: false,
      alertEmails: [],
      architecture: 'arm64',
      memorySize: 1024,
      logRetentionDays: 90,
      bucket: { lifecycle: { backstopExpirationDays: 100, noncurrentVersionDays: 30 } },
    });
    expect(c.vpc).toBeUndefined();
    expect(c.env).toBeUndefined();
    expect(c.slack).toBeUndefined();
  });

  it('accepts `-c` strings as well as JSON values, and ignores comments and CDK keys', () => {
    const c = parseConfig(
      {
        '//': ['a comment'],
        '//timeZone': 'another comment',
        _comment: 'x',
        '@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy': true,
        'aws:cdk:enable-path-metadata': true,
        dbSecretArn: SECRET,
        databases: 'app, analytics',
        alertEmails: 'a@example.com,b@example.com',
        scheduleHour: '3',
        retentionCount: '14',
        notifyOnSuccess: 'true',
        timeZone: 'Europe/Paris',
        vpcId: 'vpc-0123456789abcdef0',
        subnetIds: 'subnet-0123456789abcdef0,subnet-0fedcba9876543210',
        dbSecurityGroupId: 'sg-0123456789abcdef0',
        slackWorkspaceId: 'T0123ABCD',
        slackChannelId: 'C0123ABCD',
        account: '123456789012',
        region: 'eu-west-3',
      },
      { now },
    );
    expect(c.databases).toEqual(['app', 'analytics']);
    expect(c.alertEmails).toEqual(['a@example.com', 'b@example.com']);
    expect(c.schedule).toEqual({ hour: 3, minute: 0, timeZone: 'Europe/Paris', allowDstSkip: false });
    expect(c.retentionCount).toBe(14);
    expect(c.notifyOnSuccess).toBe(true);
    expect(c.vpc).toEqual({ vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'], dbSecurityGroupId: 'sg-0123456789abcdef0' });
    expect(c.slack).toEqual({ workspaceId: 'T0123ABCD', channelId: 'C0123ABCD' });
    expect(c.env).toEqual({ account: '123456789012', region: 'eu-west-3' });
  });

  it('requires the secret, as a complete ARN', () => {
    expect(errorOf({})).toMatch(/context "dbSecretArn": expected required: the complete ARN/);
    expect(errorOf({ dbSecretArn: 'prod/db' })).toMatch(/context "dbSecretArn": expected the complete secret ARN, ending with the 6-character suffix/);
  });

  it('rejects a bad zone, hour, minute, architecture and e-mail, naming each key', () => {
    const message = errorOf({ dbSecretArn: SECRET, timeZone: 'Europe/Pariss', scheduleHour: 24, scheduleMinute: '7.5', architecture: 'arm', alertEmails: ['ops'] });
    expect(message).toMatch(/context "timeZone": expected an IANA time zone/);
    expect(message).toMatch(/context "scheduleHour": expected an integer from 0 to 23/);
    expect(message).toMatch(/context "scheduleMinute": expected an integer from 0 to 59/);
    expect(message).toMatch(/context "architecture": expected `arm64` or `x86_64`/);
    expect(message).toMatch(/context "alertEmails.0": expected e-mail addresses/);
  });

  it('rejects database names that cannot travel in DATABASES, and duplicates', () => {
    expect(errorOf({ dbSecretArn: SECRET, databases: ['a,b'] })).toMatch(/context "databases.0": expected database names without commas/);
    expect(errorOf({ dbSecretArn: SECRET, databases: 'app,app' })).toMatch(/context "databases": expected each database once/);
  });

  it('rejects unknown keys (a typo never falls back to a default silently)', () => {
    expect(errorOf({ dbSecretArn: SECRET, scheduelHour: 3 })).toMatch(/unknown context key\(s\) "scheduelHour": known keys are .*scheduleHour/);
  });

  it('rejects inconsistent bucket options, naming both keys', () => {
    expect(errorOf({ dbSecretArn: SECRET, bucketName: 'my-backups', objectLockDays: 30 })).toMatch(/"objectLockDays" applies to a bucket this stack creates, but "bucketName" imports an existing one/);
    expect(errorOf({ dbSecretArn: SECRET, bucketKmsKeyArn: 'arn:aws:kms:eu-west-3:123456789012:key/0b7f2f4e-1111-2222-3333-444455556666' })).toMatch(/"bucketKmsKeyArn" .* needs "bucketName"/);
  });

  it('takes every KMS key ARN setting the same way: a multi-Region key is a key, an alias ARN is refused saying why', () => {
    const mrk = 'arn:aws:kms:eu-west-3:123456789012:key/mrk-0123456789abcdef0123456789abcdef';
    expect(parseConfig({ dbSecretArn: SECRET, dbSecretKmsKeyArn: mrk }).dbSecretKmsKeyArn).toBe(mrk);
    expect(errorOf({ dbSecretArn: SECRET, dbSecretKmsKeyArn: 'arn:aws:kms:eu-west-3:123456789012:alias/db' })).toMatch(/"dbSecretKmsKeyArn".*is an alias ARN, which an IAM policy cannot grant/);
  });

  it('sets the lifecycle backstop of a created bucket: long after what pruning keeps, validated against retentionCount', () => {
    const lifecycle = (context: Record<string, unknown>) => parseConfig({ dbSecretArn: SECRET, ...context }, { now }).bucket.lifecycle;
    expect(lifecycle({ retentionCount: 1 })).toEqual({ backstopExpirationDays: 100, noncurrentVersionDays: 30 });
    // A retention longer than the default backstop moves the default, never the other way round.
    expect(lifecycle({ retentionCount: 365 })).toEqual({ backstopExpirationDays: 367, noncurrentVersionDays: 30 });
    expect(lifecycle({ retentionCount: '14', backstopExpirationDays: '16', noncurrentVersionDays: '7' })).toEqual({ backstopExpirationDays: 16, noncurrentVersionDays: 7 });
    expect(errorOf({ dbSecretArn: SECRET, retentionCount: 14, backstopExpirationDays: 15 })).toMatch(
      /context "backstopExpirationDays": expected at least retentionCount \+ 2 = 16 days \(retentionCount is 14\): a shorter backstop would expire backups that pruning keeps/,
    );
    expect(errorOf({ dbSecretArn: SECRET, noncurrentVersionDays: 0 })).toMatch(/context "noncurrentVersionDays": expected an integer from 1 to 36500/);
    expect(errorOf({ dbSecretArn: SECRET, bucketName: 'my-backups', noncurrentVersionDays: 60 })).toMatch(
      /context "noncurrentVersionDays" configures the lifecycle rules of a bucket this stack creates, but "bucketName" imports an existing one/,
    );
    // An imported bucket's lifecycle is its owner's.
    expect(lifecycle({ bucketName: 'my-backups' })).toBeUndefined();
  });

  it('GFS retention: the keys into the configuration, and a backstop that outlives the longest keep, naming the keys', () => {
    const c = parseConfig({ dbSecretArn: SECRET, retentionDaily: '14', retentionWeekly: 8, retentionMonthly: 12 }, { now });
    expect(c.gfs).toEqual({ daily: 14, weekly: 8, monthly: 12 });
    // monthly 12 × 31 = 372 days, + 2: the default backstop follows.
    expect(c.bucket.lifecycle).toEqual({ backstopExpirationDays: 374, noncurrentVersionDays: 30 });
    expect(parseConfig({ dbSecretArn: SECRET }, { now }).gfs).toEqual({ daily: 0, weekly: 0, monthly: 0 });
    expect(parseConfig({ dbSecretArn: SECRET, retentionWeekly: 20 }, { now }).bucket.lifecycle?.backstopExpirationDays).toBe(142);
    expect(errorOf({ dbSecretArn: SECRET, retentionMonthly: 12, backstopExpirationDays: 365 })).toMatch(
      /context "backstopExpirationDays": expected at least 374 days \(retentionMonthly 12 × 31 = 372 days, \+ 2\), got 365: a shorter backstop would expire backups that "retentionMonthly" keeps/,
    );
    expect(errorOf({ dbSecretArn: SECRET, retentionWeekly: 30, backstopExpirationDays: 200 })).toMatch(/at least 212 days \(retentionWeekly 30 × 7 = 210 days/);
    expect(errorOf({ dbSecretArn: SECRET, retentionDaily: -1 })).toMatch(/context "retentionDaily": expected a whole number from 0 to 1000/);
    expect(errorOf({ dbSecretArn: SECRET, retentionMonthly: 'twelve' })).toMatch(/context "retentionMonthly"/);
  });

  it('rejects inconsistent network and Slack options', () => {
    expect(errorOf({ dbSecretArn: SECRET, subnetIds: ['subnet-0123456789abcdef0'] })).toMatch(/need "vpcId"/);
    expect(errorOf({ dbSecretArn: SECRET, vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0'], subnetType: 'PRIVATE_ISOLATED' })).toMatch(/"subnetIds" and "subnetType" are exclusive/);
    expect(errorOf({ dbSecretArn: SECRET, vpcId: 'vpc-0123456789abcdef0' })).toMatch(/needs "account" and "region"/);
    expect(errorOf({ dbSecretArn: SECRET, slackWorkspaceId: 'T0123ABCD' })).toMatch(/"slackWorkspaceId" and "slackChannelId" go together/);
  });

  it('looks the VPC up (subnet type) only with an explicit environment', () => {
    const c = parseConfig({ dbSecretArn: SECRET, vpcId: 'vpc-0123456789abcdef0', account: '123456789012', region: 'eu-west-3' }, { now });
    expect(c.vpc).toEqual({ vpcId: 'vpc-0123456789abcdef0', subnetType: 'PRIVATE_WITH_EGRESS' });
  });

  it('rejects a nightly time inside a DST gap with a safe proposal, unless allowDstSkip is set', () => {
    const message = errorOf({ dbSecretArn: SECRET, timeZone: 'Europe/Paris', scheduleHour: 2 });
    expect(message).toMatch(/02:00 does not exist in Europe\/Paris on the spring-forward night \(2026-03-29, 2027-03-28, 2028-03-26, …\)/);
    expect(message).toMatch(/Choose a safe time such as 01:00 or 03:00, or set allowDstSkip=true/);
    expect(parseConfig({ dbSecretArn: SECRET, timeZone: 'Europe/Paris', scheduleHour: 2, allowDstSkip: 'true' }, { now }).schedule.allowDstSkip).toBe(true);
    for (const hour of [1, 3]) expect(parseConfig({ dbSecretArn: SECRET, timeZone: 'Europe/Paris', scheduleHour: hour }, { now }).schedule.hour).toBe(hour);
    expect(parseConfig({ dbSecretArn: SECRET, timeZone: 'UTC', scheduleHour: 2 }, { now }).schedule.hour).toBe(2);
  });

  it('takes age recipients (encryptRecipients) as a list or a comma-separated string, checked by the engine\'s schema', () => {
    const r1 = 'age1n5xe8w6gv4mkva4z60yr2vv55zuh5pvd6engura3cfp92y6vvq5qxqdu75';
    const r2 = 'age1mplejazsj7mf5anvs0rspqtja2zz9m5pjgkhwcfxv3cg9h5tlgtq9thu87';
    expect(parseConfig({ dbSecretArn: SECRET, encryptRecipients: [r1, r2] }, { now }).encryptRecipients).toEqual([r1, r2]);
    expect(parseConfig({ dbSecretArn: SECRET, encryptRecipients: `${r1},${r2}` }, { now }).encryptRecipients).toEqual([r1, r2]);
    expect(parseConfig({ dbSecretArn: SECRET }, { now }).encryptRecipients).toBeUndefined();
    expect(errorOf({ dbSecretArn: SECRET, encryptRecipients: [r1, 'age1nope'] })).toMatch(/encryptRecipients.*entry 2 .*is not an age X25519 recipient/);
    // An identity pasted by mistake is refused, and never echoed.
    const identity = 'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ';
    const message = errorOf({ dbSecretArn: SECRET, encryptRecipients: identity });
    expect(message).toMatch(/entry 1 is an age identity/);
    expect(message).not.toContain(identity);
  });

  it('reports every problem of a context at once', () => {
    const message = errorOf({ dbSecretArn: SECRET, bucketName: 'my-backups', objectLockDays: 30, slackChannelId: 'C0123ABCD', timeZone: 'Europe/Paris', scheduleHour: 2 });
    expect(message.split('\n  - ')).toHaveLength(4);
    const withSchemaError = errorOf({ dbSecretArn: SECRET, retentionCount: 0, timeZone: 'Europe/Paris', scheduleHour: 2 });
    expect(withSchemaError).toMatch(/"retentionCount"/);
    expect(withSchemaError).toMatch(/02:00 does not exist in Europe\/Paris/);
  });
});
