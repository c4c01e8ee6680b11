/**
 * The composition of alert channels: each alert goes to the channels that carry its kind, the log
 * takes what none carries, and every delivery gets a deadline (the channel's own, else
 * ALERT_TIMEOUT_SECONDS). The heartbeat runs against a loopback HTTP server standing in for
 * healthchecks.io.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAlerts } from '../../../engine/alerts/alerts.ts';
import { composeAlerts, type Alert, type AlertChannel, type Bound } from '../../../engine/alerts/channel.ts';
import { logChannel } from '../../../engine/alerts/log.ts';
import type { EngineEvent } from '../../../engine/events.ts';

const message = { subject: '[pg-s3-backup] FAILED app: dump', body: 'pg-s3-backup: the backup of database "app" FAILED at stage "dump".' };

/** A channel for people's alerts that records what it got, and waits for its deadline when told to. */
function recorder(name: string, options: { hang?: boolean; timeout?: AlertChannel['timeout'] } = {}) {
  const got: { alert: Alert; bound: Bound; waitedMs: number }[] = [];
  const channel: AlertChannel = {
    name,
    timeout: options.timeout,
    carries: (a) => a.kind !== 'run ended',
    async send(alert, bound) {
      const t0 = Date.now();
      if (options.hang) await new Promise((resolve) => bound.signal.addEventListener('abort', resolve, { once: true }));
      got.push({ alert, bound, waitedMs: Date.now() - t0 });
      return !options.hang;
    },
  };
  return { channel, got };
}

describe('composeAlerts', () => {
  it('sends an alert to every channel that carries it, and the log only what none carries', async () => {
    const events: EngineEvent[] = [];
    const people = recorder('people');
    const alerts = composeAlerts([people.channel], { timeoutMs: 1_000, fallback: logChannel((e) => void events.push(e)) });
    expect(await alerts.send({ kind: 'failed', message })).toEqual({ people: true });
    // The run's end is the dead-man's switch's: without one, nobody carries it and nothing is logged.
    expect(await alerts.send({ kind: 'run ended', status: 'succeeded', summary: 'backup succeeded' })).toEqual({});
    expect(people.got.map((g) => g.alert.kind)).toEqual(['failed']);
    expect(events).toEqual([]);

    const alone = composeAlerts([], { timeoutMs: 1_000, fallback: logChannel((e) => void events.push(e)) });
    expect(await alone.send({ kind: 'news', message })).toEqual({ log: false });
    expect(events).toEqual([{ event: 'alert.not-configured', subject: message.subject, alert: message.body }]);
  });

  it('bounds each delivery: the composition\'s ALERT_TIMEOUT_SECONDS, or the channel\'s own', async () => {
    const stalled = recorder('stalled', { hang: true });
    const own = recorder('own', { hang: true, timeout: { ms: 100, setting: 'OWN_TIMEOUT_SECONDS' } });
    const alerts = composeAlerts([stalled.channel, own.channel], { timeoutMs: 300, fallback: logChannel(() => {}) });
    const t0 = Date.now();
    expect(await alerts.send({ kind: 'failed', message })).toEqual({ stalled: false, own: false });
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(stalled.got[0]!.bound).toMatchObject({ timeoutMs: 300, setting: 'ALERT_TIMEOUT_SECONDS' });
    expect(stalled.got[0]!.waitedMs).toBeGreaterThanOrEqual(290);
    expect(own.got[0]!.bound).toMatchObject({ timeoutMs: 100, setting: 'OWN_TIMEOUT_SECONDS' });
    expect(own.got[0]!.waitedMs).toBeLessThan(300);
  });
});

describe('createAlerts with HEARTBEAT_URL', () => {
  let server: Server;
  let base: string;
  const sockets = new Set<Socket>();
  const pings: { path: string; body: string }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (b: Buffer) => (body += b.toString()));
      req.on('end', () => {
        pings.push({ path: req.url ?? '', body });
        res.writeHead(200).end('OK');
      });
    });
    server.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/ping/x`;
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });

  it('pings once per run (its end, or its failure as a whole), never for one database\'s failure', async () => {
    const events: EngineEvent[] = [];
    const alerts = createAlerts(
      { alertTopicArn: undefined, heartbeatUrl: base, heartbeatTimeoutMs: 2_000, alertTimeoutMs: 1_000 },
      // No topic: SNS is never asked (a client that would throw shows it).
      { sns: { send: () => Promise.reject(new Error('SNS must not be called')) }, events: (e) => void events.push(e) },
    );
    expect(await alerts.send({ kind: 'failed', message })).toEqual({ log: false });
    expect(pings).toEqual([]);
    expect(await alerts.send({ kind: 'run ended', status: 'failed', summary: 'backup failed\n  FAILED app (dump)' })).toEqual({ heartbeat: true });
    expect(await alerts.send({ kind: 'run failed', message })).toEqual({ heartbeat: true });
    expect(await alerts.send({ kind: 'run ended', status: 'succeeded', summary: 'backup succeeded' })).toEqual({ heartbeat: true });
    expect(pings).toEqual([
      { path: '/ping/x/fail', body: 'backup failed\n  FAILED app (dump)' },
      { path: '/ping/x/fail', body: `${message.subject}\n\n${message.body}` },
      { path: '/ping/x', body: 'backup succeeded' },
    ]);
    expect(events.map((e) => e.event)).toEqual(['alert.not-configured', 'heartbeat.sent', 'heartbeat.sent', 'heartbeat.sent']);
  });
});
