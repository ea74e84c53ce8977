/**
 * @tollgate/client against a real gateway socket, driven by the official `openai` SDK: chat
 * completions (whole and streamed), embeddings and errors travel encrypted in both formats, and
 * the prompt never appears in what goes over the wire.
 */
import type { AddressInfo } from 'node:net';
import { connect, createServer as createNetServer } from 'node:net';
import { createEncryptedFetch, type EncryptionFormat } from '@tollgate/client';
import OpenAI from 'openai';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startTestGateway } from './test-helpers.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const KEY = 'sk-client-e2e-1';
const PROMPT = 'Whisper the launch codes: zebra-quartz-0042';
const REPLY = 'one two three four five six';

/** What went over the wire: each outer request, and whether each outer answer had ended. */
interface Wire {
  requests: Array<{ method: string; url: string; headers: Headers; body: string }>;
  /** Per outer answer, set once its body has been read to the end. */
  ended: boolean[];
}

/** The underlying fetch, recording the outer requests and noting when each answer ends. */
function recordingFetch(wire: Wire): typeof fetch {
  return async function recording(input, init) {
    const request = new Request(input, init);
    const body = new Uint8Array(await request.clone().arrayBuffer());
    wire.requests.push({
      method: request.method,
      url: request.url,
      headers: request.headers,
      // latin1 keeps every byte, so a plaintext prompt anywhere in the body would show.
      body: new TextDecoder('latin1').decode(body),
    });
    const response = await fetch(request);
    if (!response.body) return response;
    const index = wire.ended.push(false) - 1;
    const watched = response.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        flush() {
          wire.ended[index] = true;
        },
      }),
    );
    return new Response(watched, { status: response.status, headers: response.headers });
  };
}

async function start(format: EncryptionFormat) {
  const { gateway, upstream } = await startTestGateway(
    { values: { api_keys: [KEY] }, upstream: { reply: REPLY } },
    (cleanup) => cleanups.push(cleanup),
  );
  const wire: Wire = { requests: [], ended: [] };
  const encryptedFetch = createEncryptedFetch({
    gatewayUrl: gateway.url,
    format,
    fetch: recordingFetch(wire),
  });
  const client = (apiKey: string) =>
    new OpenAI({
      baseURL: `${gateway.url}/v1`,
      apiKey,
      fetch: encryptedFetch,
      maxRetries: 0,
    });
  return { gateway, upstream, wire, openai: client(KEY), client };
}

function expectNoPlaintext(wire: Wire, format: EncryptionFormat) {
  expect(wire.requests.length).toBeGreaterThan(0);
  for (const request of wire.requests) {
    expect(request.body).not.toContain(PROMPT);
    expect(request.body).not.toContain('zebra-quartz');
    if (format === 'ohttp') {
      // The key and the path stay inside too: outside there is only the gateway resource.
      expect(new URL(request.url).pathname).toBe('/.well-known/ohttp-gateway');
      expect(request.headers.get('authorization')).toBeNull();
      expect(request.body).not.toContain(KEY);
    }
  }
}

describe.each(['ohttp', 'obol'] as const)('@tollgate/client with the openai SDK (%s)', (format) => {
  it('behavior: a chat completion and embeddings go through encrypted; the prompt never crosses the wire in plaintext', async () => {
    const { upstream, wire, openai } = await start(format);
    const completion = await openai.chat.completions.create({
      model: 'fake-model',
      messages: [{ role: 'user', content: PROMPT }],
    });
    expect(completion.choices[0]!.message.content).toBe(REPLY);
    const embeddings = await openai.embeddings.create({ model: 'fake-model', input: PROMPT });
    expect(embeddings.data[0]!.embedding).toHaveLength(8);

    // The gateway opened what the wire did not show: the upstream got the prompt.
    const served = upstream.requests.filter((request) => request.method === 'POST');
    expect(JSON.stringify(served.map((request) => request.body))).toContain(PROMPT);
    expectNoPlaintext(wire, format);
  });

  it('behavior: a streamed chat completion arrives in chunks', async () => {
    const { upstream, wire, openai } = await start(format);
    upstream.setBehavior({ chunkDelayMs: 100 });
    const stream = await openai.chat.completions.create({
      model: 'fake-model',
      messages: [{ role: 'user', content: PROMPT }],
      stream: true,
    });
    let text = '';
    let chunks = 0;
    let outerEndedAtFirstToken: boolean | undefined;
    for await (const chunk of stream) {
      const token = chunk.choices[0]?.delta?.content ?? '';
      if (token && outerEndedAtFirstToken === undefined) {
        outerEndedAtFirstToken = wire.ended.at(-1);
      }
      text += token;
      chunks++;
    }
    expect(text).toBe(REPLY);
    expect(chunks).toBeGreaterThan(3);
    // OHTTP hands each token on as it is decrypted, while the encrypted answer is still coming;
    // the Obol format can only seal (and so open) the answer whole.
    expect(outerEndedAtFirstToken).toBe(format === 'obol');
    expectNoPlaintext(wire, format);
  });

  it('error: an upstream that breaks mid-stream reaches the SDK as an error, never as a short answer', async () => {
    const { upstream, openai } = await start(format);
    upstream.setBehavior({ failAfterChunks: 2 });
    const tokens: string[] = [];
    const failure = await (async () => {
      const stream = await openai.chat.completions.create({
        model: 'fake-model',
        messages: [{ role: 'user', content: PROMPT }],
        stream: true,
      });
      for await (const chunk of stream) tokens.push(chunk.choices[0]?.delta?.content ?? '');
    })().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(OpenAI.APIError);
    expect((failure as Error).message).toContain('upstream stream broke');
    expect(tokens.join('')).not.toBe(REPLY);
  });

  it('error: a wrong key and an unknown model reach the SDK as 401 and 404', async () => {
    const { wire, openai, client } = await start(format);
    const unauthorized = await client('sk-wrong')
      .chat.completions.create({
        model: 'fake-model',
        messages: [{ role: 'user', content: PROMPT }],
      })
      .catch((error: unknown) => error);
    expect(unauthorized).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((unauthorized as InstanceType<typeof OpenAI.APIError>).status).toBe(401);

    const missing = await openai.chat.completions
      .create({ model: 'no-such-model', messages: [{ role: 'user', content: PROMPT }] })
      .catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect((missing as InstanceType<typeof OpenAI.APIError>).status).toBe(404);
    expectNoPlaintext(wire, format);
  });
});

describe('what an observer between the client and the gateway sees', () => {
  it('behavior: a capture of every byte both ways holds neither the prompt, the API key, the path nor any output token', async () => {
    const reply = 'zebra quokka narwhal axolotl';
    const { gateway } = await startTestGateway(
      { values: { api_keys: [KEY] }, upstream: { reply, chunkDelayMs: 20 } },
      (cleanup) => cleanups.push(cleanup),
    );
    // A logging TCP proxy: what a TLS terminator or a tunnel in front of the gateway would see.
    const seen: Buffer[] = [];
    const target = new URL(gateway.url);
    const proxy = createNetServer((client) => {
      const upstreamSocket = connect(Number(target.port), target.hostname);
      client.on('data', (data) => seen.push(Buffer.from(data)));
      upstreamSocket.on('data', (data) => seen.push(Buffer.from(data)));
      client.pipe(upstreamSocket).pipe(client);
      client.on('error', () => upstreamSocket.destroy());
      upstreamSocket.on('error', () => client.destroy());
    });
    await new Promise<void>((done) => proxy.listen(0, '127.0.0.1', () => done()));
    cleanups.push(() => new Promise((done) => proxy.close(done)));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

    const prompt = 'the secret recipe for marmalade';
    const openai = new OpenAI({
      baseURL: `${proxyUrl}/v1`,
      apiKey: KEY,
      maxRetries: 0,
      fetch: createEncryptedFetch({ gatewayUrl: proxyUrl }),
    });
    const stream = await openai.chat.completions.create({
      model: 'fake-model',
      messages: [{ role: 'user', content: prompt }],
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text).toBe(reply);

    const wire = Buffer.concat(seen).toString('latin1');
    expect(wire).toContain('/.well-known/ohttp-gateway');
    for (const secret of [prompt, KEY, '/v1/chat/completions', ...reply.split(' ')]) {
      expect(wire, secret).not.toContain(secret);
    }
  });
});
