import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type DiscoveredServer, discover, isDiscoveryError } from './index.js';
import {
  closedPort,
  FAKE_VERSIONS,
  type FakeServer,
  type FakeServerKind,
  type FakeServerOptions,
  type SilentServer,
  startFakeServer,
  startSilentServer,
} from './testing.js';

const fakes = new Map<string, FakeServer>();
let silent: SilentServer;
let closed: number;

const setups: Record<string, FakeServerOptions> = {
  ollama: { kind: 'ollama', models: ['llama3.2:latest', 'nomic-embed-text:latest'] },
  'llama-server': { kind: 'llama-server', models: ['qwen3-8b-q4_k_m'] },
  'llama-server loading': { kind: 'llama-server', loading: true },
  'llama-server with api key': { kind: 'llama-server', apiKey: 'secret', models: ['gemma-3'] },
  vllm: { kind: 'vllm', models: ['Qwen/Qwen3-8B', 'my-lora'] },
  'vllm engine dead': { kind: 'vllm', engineDead: true },
  'lm-studio': { kind: 'lm-studio', models: ['meta-llama-3.1-8b-instruct'] },
  openai: { kind: 'openai', models: ['mlx-community/Llama-3.2-3B-Instruct-4bit'] },
  html: { kind: 'html' },
  'invalid-json': { kind: 'invalid-json' },
  'catch-all': { kind: 'catch-all' },
};

function fake(name: string): FakeServer {
  const server = fakes.get(name);
  if (!server) throw new Error(`no fake named ${name}`);
  return server;
}

beforeAll(async () => {
  for (const [name, options] of Object.entries(setups)) {
    fakes.set(name, await startFakeServer(options));
  }
  silent = await startSilentServer();
  closed = await closedPort();
});

afterAll(async () => {
  await Promise.all([...fakes.values()].map((server) => server.close()));
  await silent.close();
});

async function discoverAll(): Promise<DiscoveredServer[]> {
  return discover({
    ports: [...[...fakes.values()].map((server) => server.port), silent.port, closed],
    timeoutMs: 300,
  });
}

describe('discover', () => {
  test('behavior: tells every kind apart on one scan, and reports nothing else', async () => {
    const found = await discoverAll();
    const typeByPort = new Map(found.map((server) => [server.port, server.type]));
    const expected: Record<string, FakeServerKind | undefined> = {
      ollama: 'ollama',
      'llama-server': 'llama-server',
      'llama-server loading': 'llama-server',
      'llama-server with api key': 'llama-server',
      vllm: 'vllm',
      'vllm engine dead': 'vllm',
      'lm-studio': 'lm-studio',
      openai: 'openai',
      html: undefined,
      'invalid-json': undefined,
      'catch-all': undefined,
    };
    for (const [name, type] of Object.entries(expected)) {
      expect({ name, type: typeByPort.get(fake(name).port) }).toEqual({ name, type });
    }
    expect(found).toHaveLength(8);
    expect(typeByPort.has(silent.port)).toBe(false);
    expect(typeByPort.has(closed)).toBe(false);
  });

  test('behavior: results are sorted by port', async () => {
    const ports = (await discoverAll()).map((server) => server.port);
    expect(ports).toEqual([...ports].sort((a, b) => a - b));
  });

  test('behavior: Ollama with its version and its models from /api/tags', async () => {
    const [server] = await discover({ ports: [fake('ollama').port] });
    expect(server).toEqual({
      url: fake('ollama').url,
      host: '127.0.0.1',
      port: fake('ollama').port,
      type: 'ollama',
      version: FAKE_VERSIONS.ollama,
      models: ['llama3.2:latest', 'nomic-embed-text:latest'],
      healthy: true,
    });
  });

  test('behavior: llama-server with its build, its models listed once from both list shapes', async () => {
    const [server] = await discover({ ports: [fake('llama-server').port] });
    expect(server).toEqual({
      url: fake('llama-server').url,
      host: '127.0.0.1',
      port: fake('llama-server').port,
      type: 'llama-server',
      version: FAKE_VERSIONS['llama-server'],
      models: ['qwen3-8b-q4_k_m'],
      healthy: true,
    });
  });

  test('behavior: a llama-server still loading its model is found and not healthy', async () => {
    const [server] = await discover({ ports: [fake('llama-server loading').port] });
    expect(server).toMatchObject({ type: 'llama-server', healthy: false, models: [] });
  });

  test('behavior: a llama-server with --api-key (private /props) is told by its model owner', async () => {
    const [server] = await discover({ ports: [fake('llama-server with api key').port] });
    expect(server).toMatchObject({ type: 'llama-server', healthy: true, models: ['gemma-3'] });
    expect(server?.version).toBeUndefined();
  });

  test('behavior: a vLLM answering /health with 200 is vLLM, not llama-server', async () => {
    const vllm = fake('vllm');
    const [server] = await discover({ ports: [vllm.port] });
    expect(server).toEqual({
      url: vllm.url,
      host: '127.0.0.1',
      port: vllm.port,
      type: 'vllm',
      version: FAKE_VERSIONS.vllm,
      models: ['Qwen/Qwen3-8B', 'my-lora'],
      healthy: true,
    });
    // The point of the test: /health was asked, and answered 200.
    expect(vllm.requests).toContain('GET /health');
  });

  test('behavior: a vLLM whose engine died (503 /health) is not healthy', async () => {
    const [server] = await discover({ ports: [fake('vllm engine dead').port] });
    expect(server).toMatchObject({ type: 'vllm', healthy: false, models: ['fake-model'] });
  });

  test('behavior: LM Studio, although it answers 200 to every path', async () => {
    const [server] = await discover({ ports: [fake('lm-studio').port] });
    expect(server).toEqual({
      url: fake('lm-studio').url,
      host: '127.0.0.1',
      port: fake('lm-studio').port,
      type: 'lm-studio',
      models: ['meta-llama-3.1-8b-instruct'],
      healthy: true,
    });
  });

  test('behavior: any other server listing models is openai, with the API base as its URL', async () => {
    const [server] = await discover({ ports: [fake('openai').port] });
    expect(server).toEqual({
      url: `${fake('openai').url}/v1`,
      host: '127.0.0.1',
      port: fake('openai').port,
      type: 'openai',
      models: ['mlx-community/Llama-3.2-3B-Instruct-4bit'],
      healthy: true,
    });
  });

  test('behavior: HTML, invalid JSON, a catch-all, a silent port and a closed port report nothing', async () => {
    const found = await discover({
      ports: [
        fake('html').port,
        fake('invalid-json').port,
        fake('catch-all').port,
        silent.port,
        closed,
      ],
      timeoutMs: 200,
    });
    expect(found).toEqual([]);
  });

  test('behavior: extra ports are probed with their label', async () => {
    const found = await discover({
      ports: [fake('ollama').port],
      extraPorts: [{ port: fake('vllm').port, label: 'gpu box' }, { port: fake('ollama').port }],
    });
    const byPort = new Map(found.map((server) => [server.port, [server.type, server.label]]));
    expect(found).toHaveLength(2);
    expect(byPort.get(fake('ollama').port)).toEqual(['ollama', undefined]);
    expect(byPort.get(fake('vllm').port)).toEqual(['vllm', 'gpu box']);
  });

  test('behavior: an opt-in CIDR range on loopback is scanned', async () => {
    const found = await discover({ hosts: [], cidr: '127.0.0.1/32', ports: [fake('vllm').port] });
    expect(found.map((server) => [server.host, server.type])).toEqual([['127.0.0.1', 'vllm']]);
  });

  test('behavior: no hosts and no range probe nothing', async () => {
    expect(await discover({ hosts: [] })).toEqual([]);
  });

  test('behavior: an abort stops a scan waiting on a silent port, with the signal reason', async () => {
    const controller = new AbortController();
    const reason = new Error('stop');
    const scan = discover({ ports: [silent.port], timeoutMs: 60_000, signal: controller.signal });
    await silent.connected;
    controller.abort(reason);
    await expect(scan).rejects.toBe(reason);
  });

  test('error: an aborted signal rejects before any probe', async () => {
    const ollama = fake('ollama');
    const before = ollama.requests.length;
    await expect(
      discover({ ports: [ollama.port], signal: AbortSignal.abort(new Error('gone')) }),
    ).rejects.toThrow('gone');
    expect(ollama.requests.length).toBe(before);
  });

  test.each([
    [{ hosts: ['http://127.0.0.1'] }, 'is not a host'],
    [{ hosts: ['127.0.0.1:8080'] }, 'is not a host'],
    [{ hosts: ['bad host'] }, 'is not a host'],
    [{ hosts: 'localhost' }, 'hosts must be an array'],
    [{ ports: [0] }, 'ports must be an array of ports'],
    [{ ports: [70_000] }, 'ports must be an array of ports'],
    [{ ports: [80.5] }, 'ports must be an array of ports'],
    [{ extraPorts: [{ port: -1 }] }, 'extraPorts ports must be'],
    [{ extraPorts: [null] }, 'extraPorts ports must be'],
    [{ extraPorts: [{ port: 9000, label: 7 }] }, 'label of extra port 9000 must be a string'],
    [{ timeoutMs: 0 }, 'timeoutMs must be a positive number'],
    [{ timeoutMs: Number.NaN }, 'timeoutMs must be a positive number'],
    [{ concurrency: 0 }, 'concurrency must be a positive integer'],
  ])('error: bad options %j are refused clearly', async (options, message) => {
    const error = await discover(options as never).catch((caught: unknown) => caught);
    expect(isDiscoveryError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'invalid_option' });
    expect((error as Error).message).toContain(message);
  });

  test('error: an oversized CIDR range is refused before any probe', async () => {
    await expect(discover({ cidr: '10.0.0.0/16', ports: [1] })).rejects.toMatchObject({
      code: 'cidr_too_large',
    });
  });

  test('args: IPv6 loopback hosts are bracketed in URLs and reported without brackets', async () => {
    // ::1 may be unavailable where IPv6 is off; either way the scan completes without error.
    const found = await discover({ hosts: ['::1'], ports: [closed], timeoutMs: 200 });
    expect(found).toEqual([]);
  });
});
