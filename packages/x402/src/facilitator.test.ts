import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createHttpFacilitator,
  type Facilitator,
  type FacilitatorRequest,
  isX402Error,
  type SettleResponse,
  serializeSettlements,
  type X402ErrorCode,
} from './index.js';
import { deferred, PAYER, SEPOLIA, sepoliaTerms } from './test-fixtures.js';

interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

type Handler = (request: Received, response: ServerResponse) => void;

let server: Server;
let base: string;
let received: Received[] = [];
let handler: Handler = (_request, response) => json(response, 404, { error: 'no handler' });

function json(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}

beforeAll(async () => {
  server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const entry = {
        method: request.method ?? '',
        url: request.url ?? '',
        headers: request.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      received.push(entry);
      // No keep-alive: afterEach cuts connections, and a pooled socket cut between tests
      // would fail the next test's POST.
      response.setHeader('connection', 'close');
      handler(entry, response);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(() => {
  received = [];
  handler = (_request, response) => json(response, 404, { error: 'no handler' });
  // Requests a test left hanging (timeouts) end here.
  server.closeAllConnections();
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const REQUEST: FacilitatorRequest = {
  x402Version: 2,
  paymentPayload: {
    x402Version: 2,
    accepted: sepoliaTerms(),
    payload: {
      signature: `0x${'11'.repeat(65)}`,
      authorization: {
        from: PAYER.address,
        to: sepoliaTerms().payTo,
        value: '1000',
        validAfter: '0',
        validBefore: '9999999999',
        nonce: `0x${'22'.repeat(32)}`,
      },
    },
  },
  paymentRequirements: sepoliaTerms(),
};
const RECEIPT: SettleResponse = {
  success: true,
  transaction: `0x${'ab'.repeat(32)}`,
  network: SEPOLIA.id,
  payer: PAYER.address,
};

/** Answers each endpoint with a fixed status and body. */
function answering(
  answers: Partial<Record<'verify' | 'settle' | 'supported', [number, unknown]>>,
): Handler {
  return (request, response) => {
    const endpoint = request.url.split('/').pop()?.split('?')[0] as keyof typeof answers;
    const answer = answers[endpoint];
    if (!answer) return json(response, 404, { error: `unexpected ${request.url}` });
    json(response, answer[0], answer[1]);
  };
}

async function codeOf(run: Promise<unknown>): Promise<X402ErrorCode | 'no error'> {
  try {
    await run;
  } catch (error) {
    if (isX402Error(error)) {
      if (error.code === 'facilitator_unavailable') expect(error.status).toBe(503);
      return error.code;
    }
    throw error;
  }
  return 'no error';
}

describe('createHttpFacilitator', () => {
  it('behavior: verify and settle POST the request as JSON; supported is a GET', async () => {
    handler = answering({
      verify: [200, { isValid: true, payer: PAYER.address }],
      settle: [200, RECEIPT],
      supported: [200, { kinds: [{ x402Version: 2, scheme: 'exact', network: SEPOLIA.id }] }],
    });
    const facilitator = createHttpFacilitator({ url: base });
    expect(await facilitator.verify(REQUEST)).toEqual({ isValid: true, payer: PAYER.address });
    expect(await facilitator.settle(REQUEST)).toEqual(RECEIPT);
    expect(await facilitator.supported()).toEqual({
      kinds: [{ x402Version: 2, scheme: 'exact', network: SEPOLIA.id }],
    });
    expect(received.map((entry) => `${entry.method} ${entry.url}`)).toEqual([
      'POST /verify',
      'POST /settle',
      'GET /supported',
    ]);
    for (const entry of received.slice(0, 2)) {
      expect(entry.headers['content-type']).toBe('application/json');
      expect(JSON.parse(entry.body)).toEqual(REQUEST);
    }
    expect(received[2]!.body).toBe('');
  });

  it.each([
    ['', '/verify'],
    ['/', '/verify'],
    ['/x402', '/x402/verify'],
    ['/x402/', '/x402/verify'],
    ['/api/v2/x402//', '/api/v2/x402/verify'],
    ['/x402?tenant=acme', '/x402/verify?tenant=acme'],
    ['/x402/?tenant=acme#frag', '/x402/verify?tenant=acme'],
  ])('behavior: a base URL ending in %j calls %s', async (path, expected) => {
    handler = answering({ verify: [200, { isValid: true }] });
    await createHttpFacilitator({ url: `${base}${path}` }).verify(REQUEST);
    expect(received[0]!.url).toBe(expected);
  });

  it('behavior: static headers go with every call', async () => {
    handler = answering({
      verify: [200, { isValid: true }],
      settle: [200, RECEIPT],
      supported: [200, { kinds: [] }],
    });
    const facilitator = createHttpFacilitator({
      url: base,
      headers: { authorization: 'Bearer facilitator-key', 'x-tenant': 'acme' },
    });
    await facilitator.verify(REQUEST);
    await facilitator.settle(REQUEST);
    await facilitator.supported();
    for (const entry of received) {
      expect(entry.headers.authorization).toBe('Bearer facilitator-key');
      expect(entry.headers['x-tenant']).toBe('acme');
    }
  });

  it('behavior: a header function is asked per endpoint, and may be async', async () => {
    handler = answering({
      verify: [200, { isValid: true }],
      settle: [200, RECEIPT],
      supported: [200, { kinds: [] }],
    });
    const asked: string[] = [];
    const facilitator = createHttpFacilitator({
      url: base,
      headers: async (endpoint) => {
        asked.push(endpoint);
        return { authorization: `Bearer ${endpoint}-token` };
      },
    });
    await facilitator.verify(REQUEST);
    await facilitator.settle(REQUEST);
    await facilitator.supported();
    expect(asked).toEqual(['verify', 'settle', 'supported']);
    expect(received.map((entry) => entry.headers.authorization)).toEqual([
      'Bearer verify-token',
      'Bearer settle-token',
      'Bearer supported-token',
    ]);
  });

  it('behavior: a refusal with a 4xx status is an answer, not an outage', async () => {
    handler = answering({
      verify: [400, { isValid: false, invalidReason: 'insufficient_funds', payer: PAYER.address }],
      settle: [
        402,
        { success: false, errorReason: 'invalid_transaction_state', network: SEPOLIA.id },
      ],
    });
    const facilitator = createHttpFacilitator({ url: base });
    expect(await facilitator.verify(REQUEST)).toEqual({
      isValid: false,
      invalidReason: 'insufficient_funds',
      payer: PAYER.address,
    });
    expect(await facilitator.settle(REQUEST)).toEqual({
      success: false,
      errorReason: 'invalid_transaction_state',
      transaction: '',
      network: SEPOLIA.id,
    });
  });

  it.each<[string, Handler]>([
    ['a 500 with a JSON body', answering({ verify: [500, { isValid: false }] })],
    ['a 503 with a JSON body', answering({ verify: [503, { isValid: true }] })],
    [
      'a 200 that is not JSON',
      (_request, response) => {
        response.writeHead(200, { 'content-type': 'text/html' });
        response.end('<html>gateway</html>');
      },
    ],
    ['a 200 without isValid', answering({ verify: [200, { valid: true }] })],
    ['a 200 with JSON null', answering({ verify: [200, null] })],
    ['a 4xx that is not a verdict', answering({ verify: [401, { error: 'unauthorized' }] })],
    [
      'a connection cut mid-answer',
      (_request, response) => {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.write('{"isVal');
        response.destroy();
      },
    ],
  ])('error: verify answered with %s -> facilitator_unavailable', async (_name, answer) => {
    handler = answer;
    expect(await codeOf(createHttpFacilitator({ url: base }).verify(REQUEST))).toBe(
      'facilitator_unavailable',
    );
  });

  it('error: settle and supported without their fields -> facilitator_unavailable', async () => {
    handler = answering({ settle: [200, { transaction: '0x' }], supported: [200, {}] });
    const facilitator = createHttpFacilitator({ url: base });
    expect(await codeOf(facilitator.settle(REQUEST))).toBe('facilitator_unavailable');
    expect(await codeOf(facilitator.supported())).toBe('facilitator_unavailable');
  });

  it('error: connection refused -> facilitator_unavailable, naming the facilitator', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const error = await createHttpFacilitator({ url })
      .verify(REQUEST)
      .catch((caught: unknown) => caught);
    expect(isX402Error(error) && error.code).toBe('facilitator_unavailable');
    expect((error as Error).message).toContain(url);
    expect((error as Error).message).not.toMatch(/\n\s+at /);
  });

  it('error: no answer within verifyTimeoutMs -> facilitator_unavailable', async () => {
    handler = () => {}; // never answers
    const facilitator = createHttpFacilitator({ url: base, verifyTimeoutMs: 50 });
    const error = await facilitator.verify(REQUEST).catch((caught: unknown) => caught);
    expect(isX402Error(error) && error.code).toBe('facilitator_unavailable');
    expect((error as Error).message).toContain('timed out');
    expect(await codeOf(facilitator.supported())).toBe('facilitator_unavailable');
  });

  it('error: no answer within settleTimeoutMs -> facilitator_unavailable', async () => {
    handler = () => {};
    const facilitator = createHttpFacilitator({ url: base, settleTimeoutMs: 50 });
    expect(await codeOf(facilitator.settle(REQUEST))).toBe('facilitator_unavailable');
  });

  it('behavior: an injected fetch carries the calls', async () => {
    const urls: string[] = [];
    const facilitator = createHttpFacilitator({
      url: 'https://facilitator.example/x402/',
      fetch: async (input) => {
        urls.push(String(input));
        return Response.json({ isValid: true });
      },
    });
    expect(await facilitator.verify(REQUEST)).toEqual({ isValid: true });
    expect(urls).toEqual(['https://facilitator.example/x402/verify']);
  });

  it.each(['not a url', '', 'ftp://facilitator.example', 'file:///etc/passwd', '127.0.0.1:4020'])(
    'error: the URL %j is refused up front with a TypeError',
    (url) => {
      expect(() => createHttpFacilitator({ url })).toThrow(TypeError);
    },
  );

  it('error: credentials in the URL are refused (fetch would refuse every call)', () => {
    expect(() => createHttpFacilitator({ url: 'https://user:secret@facilitator.example' })).toThrow(
      /headers/,
    );
  });

  it('error: a failure names the facilitator without its query', async () => {
    handler = answering({ verify: [500, {}] });
    const error = await createHttpFacilitator({ url: `${base}/x402?key=secret` })
      .verify(REQUEST)
      .catch((caught: unknown) => caught);
    expect(isX402Error(error) && error.code).toBe('facilitator_unavailable');
    handler = () => {};
    const timeout = await createHttpFacilitator({
      url: `${base}/x402?key=secret`,
      verifyTimeoutMs: 50,
    })
      .verify(REQUEST)
      .catch((caught: unknown) => caught);
    expect((timeout as Error).message).toContain(`${base}/x402`);
    expect((timeout as Error).message).not.toContain('secret');
  });

  it('error: there is no default facilitator URL', () => {
    expect(() => createHttpFacilitator({} as { url: string })).toThrow(TypeError);
  });
});

describe('serializeSettlements', () => {
  /** A facilitator whose settle calls wait for the test, recording when they start and end. */
  function gatedFacilitator() {
    const events: string[] = [];
    const pending: Array<ReturnType<typeof deferred<SettleResponse>>> = [];
    const verified: FacilitatorRequest[] = [];
    const facilitator: Facilitator = {
      async verify(request) {
        verified.push(request);
        return { isValid: true };
      },
      async settle(request) {
        const name = request.paymentPayload.payload.authorization.value;
        events.push(`start ${name}`);
        const gate = deferred<SettleResponse>();
        pending.push(gate);
        try {
          return await gate.promise;
        } finally {
          events.push(`end ${name}`);
        }
      },
    };
    return { events, pending, verified, facilitator };
  }

  const requestFor = (value: string): FacilitatorRequest => {
    const request = structuredClone(REQUEST);
    request.paymentPayload.payload.authorization.value = value;
    return request;
  };

  /** Lets every queued callback run (a macrotask after all pending microtasks). */
  const settled = () => new Promise((resolve) => setImmediate(resolve));

  it('behavior: the second settle starts only after the first has ended', async () => {
    const fake = gatedFacilitator();
    const serial = serializeSettlements(fake.facilitator);
    const first = serial.settle(requestFor('1'));
    const second = serial.settle(requestFor('2'));
    await settled();
    expect(fake.events).toEqual(['start 1']);
    fake.pending[0]!.resolve({ ...RECEIPT, transaction: '0x01' });
    expect((await first).transaction).toBe('0x01');
    await settled();
    expect(fake.events).toEqual(['start 1', 'end 1', 'start 2']);
    fake.pending[1]!.resolve({ ...RECEIPT, transaction: '0x02' });
    expect((await second).transaction).toBe('0x02');
    expect(fake.events).toEqual(['start 1', 'end 1', 'start 2', 'end 2']);
  });

  it('behavior: verify is not queued behind a settle', async () => {
    const fake = gatedFacilitator();
    const serial = serializeSettlements(fake.facilitator);
    const pendingSettle = serial.settle(requestFor('1'));
    expect(await serial.verify(REQUEST)).toEqual({ isValid: true });
    expect(fake.verified).toEqual([REQUEST]);
    fake.pending[0]!.resolve(RECEIPT);
    await pendingSettle;
  });

  it('behavior: a failing settle does not block the next one', async () => {
    const fake = gatedFacilitator();
    const serial = serializeSettlements(fake.facilitator);
    const first = serial.settle(requestFor('1'));
    const second = serial.settle(requestFor('2'));
    await settled();
    fake.pending[0]!.reject(new Error('nonce too low'));
    await expect(first).rejects.toThrow('nonce too low');
    await settled();
    expect(fake.events).toEqual(['start 1', 'end 1', 'start 2']);
    fake.pending[1]!.resolve(RECEIPT);
    expect(await second).toEqual(RECEIPT);
  });

  it('behavior: a settle that throws synchronously rejects and the queue goes on', async () => {
    let calls = 0;
    const serial = serializeSettlements<Facilitator>({
      verify: async () => ({ isValid: true }),
      settle: (() => {
        calls += 1;
        if (calls === 1) throw new Error('boom');
        return Promise.resolve(RECEIPT);
      }) as Facilitator['settle'],
    });
    await expect(serial.settle(REQUEST)).rejects.toThrow('boom');
    expect(await serial.settle(REQUEST)).toEqual(RECEIPT);
  });

  it("behavior: the wrapper keeps the facilitator's other methods (supported)", async () => {
    handler = answering({ supported: [200, { kinds: [] }] });
    const serial = serializeSettlements(createHttpFacilitator({ url: base }));
    expect(await serial.supported()).toEqual({ kinds: [] });
  });
});
