/**
 * The values settings may take, and the checks of their syntax: below engine/config.ts and below
 * every feature module, so that config imports nothing above it (the feature modules import these
 * from here: gfs.ts the time zone check, encryption.ts the recipient check, manifest.ts the row
 * count modes, store/capabilities.ts the storage profiles).
 */
import { Encrypter } from 'age-encryption';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

export const RUNNER_CHOICES = ['lambda', 'fargate', 'auto'] as const;
export type RunnerChoice = (typeof RUNNER_CHOICES)[number];

/** ROW_COUNTS: per-table row counts in the dump's snapshot (exact), the planner's estimate, or none. */
export const ROW_COUNT_MODES = ['exact', 'estimate', 'off'] as const;
export type RowCountMode = (typeof ROW_COUNT_MODES)[number];

/** The S3-compatible stores whose capabilities engine/store/capabilities.ts documents. */
export const STORAGE_PROFILES = ['aws', 'gcs', 'r2', 'b2', 'minio', 'scaleway', 'ceph'] as const;
export type StorageProfile = (typeof STORAGE_PROFILES)[number];
/** STORAGE_PROFILE's values: a store's name, or `auto` (probe the bucket at the first run). */
export const STORAGE_PROFILE_SETTINGS = [...STORAGE_PROFILES, 'auto'] as const;
export type StorageProfileSetting = (typeof STORAGE_PROFILE_SETTINGS)[number];

/** Where restore, verify and the drill find the identity of encrypted backups. */
export type IdentitySource = { readonly kind: 'file'; readonly path: string } | { readonly kind: 'secret'; readonly secretId: string };

/** Whether `timeZone` is an IANA zone this runtime knows. */
export function isTimeZone(timeZone: string): boolean {
  if (timeZone.trim() === '') return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}

/** An X25519 recipient: `age1` and 58 bech32 characters (32 bytes and the checksum). */
const RECIPIENT_SHAPE = /^age1[02-9ac-hj-np-z]{58}$/;

/** Why `recipient` is not an age X25519 recipient, or undefined when it is one. */
export function recipientProblem(recipient: string): string | undefined {
  if (recipient.startsWith('AGE-SECRET-KEY-')) return 'is an age identity (a secret key), not a recipient: give the public key (age1…) that age-keygen prints, and keep the identity away from the backup function';
  if (!RECIPIENT_SHAPE.test(recipient)) return 'is not an age X25519 recipient (age1 followed by 58 lowercase bech32 characters)';
  try {
    new Encrypter().addRecipient(recipient);
  } catch {
    return 'is not a valid age recipient (its bech32 checksum does not match: a character was changed or lost)';
  }
  return undefined;
}
