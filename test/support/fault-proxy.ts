/**
 * An HTTP proxy in front of an AWS API (S3, SNS, Secrets Manager) that injects faults: for each
 * request a rule decides to pass it on, answer 503 (S3's ServiceUnavailable) or 500 (InternalError), reset the
 * connection, black-hole it (read it, never answer: a dead NAT, a filtering firewall), stall the
 * response mid-body (headers and the first bytes, then silence), or pass it on and lose the
 * answer (the server did the work; the client sees a reset).
 */
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault = 'pass' | '500' | '503' | 'reset' | 'blackhole' | 'stall-body' | 'lose-answer';

export interface ProxiedRequest {
  readonly method: string;
  readonly url: string;
}

export interface FaultProxy {
  readonly endpoint: string;
  /**
   * Requests seen, with the fault applied to each; passed on: the server's status, and whether its
   * answer reached the client (false when the client gave up first: a timed-out attempt it retried).
   */
  readonly log: { request: ProxiedRequest; fault: Fault; status?: number; answered: boolean }[];
  setRule(rule: (req: ProxiedRequest) => Fault): void;
  stop(): Promise<void>;
}

/** `UploadPart` requests: PUT with `partNumber` and `uploadId` in the query. */
export function isUploadPart(req: ProxiedRequest): boolean {
  return req.method === 'PUT' && /[?&]partNumber=/.test(req.url) && /[?&]uploadId=/.test(req.url);
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  let rule: (req: ProxiedRequest) => Fault = () => 'pass';
  const log: FaultProxy['log'] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const r = { method: req.method ?? 'GET', url: req.url ?? '/' };
    const fault = rule(r);
    const entry: FaultProxy['log'][number] = { request: r, fault, answered: false };
    log.push(entry);
    res.on('finish', () => (entry.answered = true));
    if (fault === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault === 'blackhole') {
      // Take the body (so the client is not blocked writing it) and never answer.
      req.resume();
      return;
    }
    if (fault === '503' || fault === '500') {
      // Drain the body first, as S3 would, so the client sees a response and not a broken pipe.
      req.resume();
      req.on('end', () => {
        res.writeHead(Number(fault), { 'content-type': 'application/xml' });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault === '503' ? 'ServiceUnavailable' : 'InternalError'}</Code><Message>Injected by the test fault proxy</Message></Error>`);
      });
      return;
    }
    const upstream = httpRequest(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        if (fault === 'lose-answer') {
          // The server has done the work; the client never hears of it.
          up.resume();
          up.on('end', () => req.socket.destroy());
          return;
        }
        if (up.statusCode !== undefined) entry.status = up.statusCode;
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (fault === 'stall-body') {
          // The headers and a first slice of the body, then silence on an open connection.
          up.once('data', (chunk: Buffer) => {
            res.write(chunk.subarray(0, Math.min(chunk.length, 1024)));
            up.destroy();
          });
          return;
        }
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    log,
    setRule(r) {
      rule = r;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
