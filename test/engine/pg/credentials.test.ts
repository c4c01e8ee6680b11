import { describe, expect, it } from 'vitest';
import { SecretError } from '../../../engine/errors.ts';
import { credentialsFromUrl, parseSecret } from '../../../engine/pg/credentials.ts';
import { NASTY_PASSWORD } from '../../support/postgres.ts';

describe('parseSecret (RDS format)', () => {
  it('reads the RDS fields, port as number or string, optional sslmode', () => {
    expect(parseSecret('s', JSON.stringify({ engine: 'postgres', host: 'db', port: '5433', username: 'u', password: NASTY_PASSWORD, dbname: 'app', sslmode: 'verify-full' }))).toEqual({
      host: 'db', port: 5433, username: 'u', password: NASTY_PASSWORD, dbname: 'app', sslmode: 'verify-full', sslrootcert: undefined,
    });
    expect(parseSecret('s', JSON.stringify({ host: 'db', username: 'u', password: 'p' }))).toMatchObject({ port: 5432, dbname: undefined });
  });

  it.each([
    [undefined, /no SecretString/],
    ['not json', /is not JSON/],
    [JSON.stringify({ host: 'db' }), /missing or has invalid fields: username, password/],
    [JSON.stringify({ host: 'db', username: 'u', password: 'p', port: 'x' }), /invalid fields: port/],
    [JSON.stringify({ host: 'db', username: 'u', password: 'p', sslmode: 'on' }), /invalid fields: sslmode/],
  ])('rejects %j with a SecretError that never quotes the content', (text, pattern) => {
    const run = () => parseSecret('prod/db', text === undefined ? undefined : text.replace('"p"', JSON.stringify(NASTY_PASSWORD)));
    expect(run).toThrow(SecretError);
    expect(run).toThrow(pattern);
    try {
      run();
    } catch (err) {
      expect((err as Error).message).not.toContain(NASTY_PASSWORD);
    }
  });
});

describe('credentialsFromUrl', () => {
  it('decodes a percent-encoded password and the TLS parameters', () => {
    const url = `postgresql://backup%40ops:${encodeURIComponent(NASTY_PASSWORD)}@[::1]:6543/my%20db?sslmode=require&sslrootcert=/ca.pem`;
    expect(credentialsFromUrl(url)).toEqual({ host: '::1', port: 6543, username: 'backup@ops', password: NASTY_PASSWORD, dbname: 'my db', sslmode: 'require', sslrootcert: '/ca.pem' });
  });
  it('rejects a bad sslmode or a missing user', () => {
    expect(() => credentialsFromUrl('postgresql://u:p@h/db?sslmode=maybe')).toThrow(/sslmode must be one of/);
    expect(() => credentialsFromUrl('postgresql://h/db')).toThrow(/must name a host and a user/);
  });
});
