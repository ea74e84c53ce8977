/**
 * @tollgate/client in a real browser: Debian's Chromium, driven by playwright-core, loads a
 * page served by this test; the page bundles the client, streams an encrypted completion
 * from a real gateway and pays for one with x402 on a local chain (another origin, so CORS
 * is exercised too). Skipped when /usr/bin/chromium is absent (`apt-get install chromium`);
 * .ci/run installs it.
 */
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  type AnvilChain,
  anvilAvailable,
  deployUsdc,
  startAnvil,
  startFacilitator,
  type TestUsdc,
} from '@tollgate/test-chain';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from './server.js';
import { startTestGateway } from './test-helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const KEY = 'sk-browser-1';
const REPLY = 'one two three four five six seven eight';

/** The page's script: the client, bundled for the browser, and a function the test calls. */
const PAGE_SCRIPT = `
import { createEncryptedFetch, createPayingFetch, getPaymentReceipt } from '@tollgate/client';
import { privateKeyToAccount } from 'viem/accounts';

window.streamCompletion = async (gatewayUrl, apiKey, format) => {
  const encryptedFetch = createEncryptedFetch({ gatewayUrl, format });
  const response = await encryptedFetch(gatewayUrl + '/v1/chat/completions', {
    method: 'POST',
    headers: { authorization: 'Bearer ' + apiKey, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'fake-model',
      messages: [{ role: 'user', content: 'Say hello please' }],
      stream: true,
    }),
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const pieces = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    pieces.push(decoder.decode(value, { stream: true }));
  }
  return { status: response.status, pieces };
};

window.payForCompletion = async (gatewayUrl, privateKey) => {
  const payingFetch = createPayingFetch({ signer: privateKeyToAccount(privateKey), maxPrice: '0.01' });
  const response = await payingFetch(gatewayUrl + '/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'Hello' }] }),
  });
  const body = await response.json();
  return { status: response.status, content: body.choices?.[0]?.message?.content, receipt: getPaymentReceipt(response) };
};
`;

describe.skipIf(!existsSync(CHROMIUM))(
  'the client in Chromium (no /usr/bin/chromium: skipped)',
  { timeout: 120_000 },
  () => {
    let gateway: Gateway;
    let paidGateway: Gateway | undefined;
    let chain: AnvilChain | undefined;
    let usdc: TestUsdc;
    let page: Server;
    let pageUrl: string;
    const cleanups: Array<() => Promise<unknown>> = [];

    beforeAll(async () => {
      ({ gateway } = await startTestGateway(
        {
          values: { api_keys: [KEY], cors: { origins: ['*'] } },
          upstream: { reply: REPLY, chunkDelayMs: 60 },
        },
        (cleanup) => cleanups.push(cleanup),
      ));

      if (anvilAvailable()) {
        chain = await startAnvil();
        const started = chain;
        cleanups.push(() => started.stop());
        usdc = await deployUsdc(chain);
        await usdc.mint(chain.accounts[2]!.address, 1_000_000n);
        const facilitator = await startFacilitator({
          rpcUrl: chain.rpcUrl,
          privateKey: chain.accounts[0]!.privateKey,
        });
        cleanups.push(() => facilitator.close());
        ({ gateway: paidGateway } = await startTestGateway(
          {
            values: {
              cors: { origins: ['*'] },
              payments: { pay_to: chain.accounts[1]!.address, facilitator_url: facilitator.url },
            },
          },
          (cleanup) => cleanups.push(cleanup),
        ));
      }

      const bundle = await build({
        stdin: {
          contents: PAGE_SCRIPT,
          resolveDir: fileURLToPath(new URL('.', import.meta.url)),
          loader: 'js',
        },
        bundle: true,
        format: 'esm',
        platform: 'browser',
        target: 'es2022',
        write: false,
        // The workspace packages resolve to their TypeScript sources, as in the tests.
        conditions: ['browser', 'import'],
      });
      const script = bundle.outputFiles[0]!.text;
      page = createServer((request, response) => {
        if (request.url === '/app.js') {
          response.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
          return;
        }
        response
          .writeHead(200, { 'content-type': 'text/html' })
          .end(
            '<!doctype html><title>tollgate</title><script type="module" src="/app.js"></script>',
          );
      });
      await new Promise<void>((done) => page.listen(0, '127.0.0.1', () => done()));
      cleanups.push(() => new Promise((done) => page.close(done)));
      pageUrl = `http://127.0.0.1:${(page.address() as AddressInfo).port}/`;
    }, 120_000);

    afterAll(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    });

    it('behavior: a page streams a completion through chunked OHTTP, decrypted as the tokens arrive', async () => {
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
      try {
        const tab = await browser.newPage();
        const errors: string[] = [];
        tab.on('pageerror', (error) => errors.push(error.message));
        await tab.goto(pageUrl);
        await tab.waitForFunction(() => 'streamCompletion' in window);
        for (const format of ['ohttp', 'obol'] as const) {
          const result = (await tab.evaluate(
            ([url, key, chosen]) =>
              (
                window as unknown as {
                  streamCompletion(
                    url: string,
                    key: string,
                    format: string,
                  ): Promise<{ status: number; pieces: string[] }>;
                }
              ).streamCompletion(url, key, chosen),
            [gateway.url, KEY, format] as const,
          )) as { status: number; pieces: string[] };
          expect(result.status, format).toBe(200);
          const text = result.pieces.join('');
          const content = text
            .split('\n')
            .filter((line) => line.startsWith('data: {'))
            .map((line) => JSON.parse(line.slice(6)).choices[0]?.delta?.content ?? '')
            .join('');
          expect(content, format).toBe(REPLY);
          expect(text, format).toContain('data: [DONE]');
          // OHTTP answers arrive in pieces as the tokens are produced; Obol seals the whole.
          if (format === 'ohttp') expect(result.pieces.length).toBeGreaterThan(3);
        }
        expect(errors).toEqual([]);
      } finally {
        await browser.close();
      }
    });

    it.skipIf(!anvilAvailable())(
      'behavior: a page pays for a completion with x402 and reads the receipt across origins',
      async () => {
        const browser = await chromium.launch({
          executablePath: CHROMIUM,
          args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
        });
        try {
          const tab = await browser.newPage();
          await tab.goto(pageUrl);
          await tab.waitForFunction(() => 'payForCompletion' in window);
          const payer = chain!.accounts[2]!;
          const before = await usdc.balanceOf(payer.address);
          const result = (await tab.evaluate(
            ([url, key]) =>
              (
                window as unknown as {
                  payForCompletion(url: string, key: string): Promise<unknown>;
                }
              ).payForCompletion(url, key),
            [paidGateway!.url, payer.privateKey] as const,
          )) as { status: number; content: string; receipt?: { success: boolean; payer: string } };
          expect(result).toMatchObject({
            status: 200,
            content: 'Hello from the fake upstream.',
            receipt: { success: true, payer: payer.address },
          });
          expect(await usdc.balanceOf(payer.address)).toBe(before - 1000n);
        } finally {
          await browser.close();
        }
      },
    );
  },
);
