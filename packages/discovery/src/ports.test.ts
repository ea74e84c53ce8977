import { describe, expect, test } from 'vitest';
import {
  DiscoveryError,
  isDiscoveryError,
  parseDiscoveryPorts,
  WELL_KNOWN_PORTS,
} from './index.js';

describe('parseDiscoveryPorts', () => {
  test.each([
    ['', []],
    ['   ', []],
    ['8080', [{ port: 8080 }]],
    ['8080:llama,9000', [{ port: 8080, label: 'llama' }, { port: 9000 }]],
    [' 8080 : llama cpp , 9000 ', [{ port: 8080, label: 'llama cpp' }, { port: 9000 }]],
    ['8080,', [{ port: 8080 }]],
    ['1,,65535', [{ port: 1 }, { port: 65535 }]],
    ['30000:sglang:main', [{ port: 30000, label: 'sglang:main' }]],
  ])('args: %j', (text, expected) => {
    expect(parseDiscoveryPorts(text)).toEqual(expected);
  });

  test.each([
    ['abc', 'does not start with a port'],
    ['0', 'does not start with a port'],
    ['65536', 'does not start with a port'],
    ['-1', 'does not start with a port'],
    ['80.5', 'does not start with a port'],
    ['1e3', 'does not start with a port'],
    ['0x50', 'does not start with a port'],
    [':llama', 'does not start with a port'],
    ['8080:', 'no usable label'],
    ['8080:   ', 'no usable label'],
    ['8080:a\tb', 'no usable label'],
    [`8080:${'x'.repeat(65)}`, 'no usable label'],
    ['8080,8080:again', 'listed twice'],
  ])('error: %j', (text, message) => {
    let error: unknown;
    try {
      parseDiscoveryPorts(text);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(DiscoveryError);
    expect(isDiscoveryError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'invalid_ports' });
    expect((error as Error).message).toContain(message);
  });

  test('error: a value that is not a string', () => {
    expect(() => parseDiscoveryPorts(8080 as unknown as string)).toThrow(/must be a string/);
  });
});

describe('WELL_KNOWN_PORTS', () => {
  test('behavior: the ports the spec names, each once', () => {
    const ports = WELL_KNOWN_PORTS.map((entry) => entry.port);
    expect(ports).toEqual([11434, 8080, 8000, 1234, 4000, 5001, 11973]);
  });
});

describe('isDiscoveryError', () => {
  test('behavior: false for other errors and values', () => {
    expect(isDiscoveryError(new Error('x'))).toBe(false);
    expect(isDiscoveryError(null)).toBe(false);
    expect(isDiscoveryError({ code: 'invalid_ports' })).toBe(false);
  });
});
