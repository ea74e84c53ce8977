import { describe, expect, test } from 'vitest';
import { type DiscoveredServer, formatDiscoveryTable } from './index.js';

const ollama: DiscoveredServer = {
  url: 'http://127.0.0.1:11434',
  host: '127.0.0.1',
  port: 11434,
  type: 'ollama',
  version: '0.12.6',
  models: ['llama3.2:latest', 'qwen3:8b'],
  healthy: true,
};
const loading: DiscoveredServer = {
  url: 'http://127.0.0.1:8080',
  host: '127.0.0.1',
  port: 8080,
  type: 'llama-server',
  models: [],
  healthy: false,
};

describe('formatDiscoveryTable', () => {
  test('behavior: one aligned row per server', () => {
    expect(formatDiscoveryTable([loading, ollama]).split('\n')).toEqual([
      'URL                     TYPE          VERSION  STATE      MODELS',
      'http://127.0.0.1:8080   llama-server  -        not ready  -',
      'http://127.0.0.1:11434  ollama        0.12.6   ready      llama3.2:latest, qwen3:8b',
    ]);
  });

  test('behavior: a LABEL column when a server has a label', () => {
    const table = formatDiscoveryTable([{ ...loading, label: 'big gpu' }, ollama]);
    expect(table.split('\n')[0]).toBe(
      'URL                     TYPE          VERSION  STATE      LABEL    MODELS',
    );
    expect(table.split('\n')[2]).toContain('ready      -        llama3.2:latest');
  });

  test('behavior: long model lists are counted past maxModels', () => {
    const many = { ...ollama, models: ['a', 'b', 'c', 'd', 'e'] };
    expect(formatDiscoveryTable([many])).toMatch(/a, b, c \(\+2 more\)$/);
    expect(formatDiscoveryTable([many], { maxModels: 1 })).toMatch(/a \(\+4 more\)$/);
  });

  test('behavior: a sentence when nothing was found', () => {
    expect(formatDiscoveryTable([])).toBe('No inference servers found.');
  });
});
