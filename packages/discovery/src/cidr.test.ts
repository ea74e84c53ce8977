import { describe, expect, test } from 'vitest';
import { expandCidr, MAX_CIDR_ADDRESSES } from './index.js';

describe('expandCidr', () => {
  test.each([
    ['127.0.0.1/32', ['127.0.0.1']],
    ['10.0.0.0/31', ['10.0.0.0', '10.0.0.1']],
    ['10.0.0.0/30', ['10.0.0.1', '10.0.0.2']],
    ['10.0.0.7/30', ['10.0.0.5', '10.0.0.6']],
    [
      ' 192.168.1.16/29 ',
      [
        '192.168.1.17',
        '192.168.1.18',
        '192.168.1.19',
        '192.168.1.20',
        '192.168.1.21',
        '192.168.1.22',
      ],
    ],
    ['255.255.255.255/32', ['255.255.255.255']],
    ['0.0.0.0/32', ['0.0.0.0']],
  ])('args: %s', (cidr, expected) => {
    expect(expandCidr(cidr)).toEqual(expected);
  });

  test('behavior: a /24 is the largest range, 254 hosts', () => {
    const hosts = expandCidr('192.168.1.77/24');
    expect(MAX_CIDR_ADDRESSES).toBe(256);
    expect(hosts).toHaveLength(254);
    expect(hosts[0]).toBe('192.168.1.1');
    expect(hosts.at(-1)).toBe('192.168.1.254');
  });

  test('behavior: the top of the address space does not overflow', () => {
    expect(expandCidr('255.255.255.252/30')).toEqual(['255.255.255.253', '255.255.255.254']);
  });

  test.each([
    ['192.168.1.0/23', '512 addresses', '192.168.1.0/24'],
    ['10.0.0.0/8', '16777216 addresses', '10.0.0.0/24'],
    ['0.0.0.0/0', '4294967296 addresses', '0.0.0.0/24'],
  ])('error: %s is too large, with a narrower range to try', (cidr, size, suggestion) => {
    let error: unknown;
    try {
      expandCidr(cidr);
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ code: 'cidr_too_large' });
    expect((error as Error).message).toContain(size);
    expect((error as Error).message).toContain(suggestion);
  });

  test('behavior: a smaller bound can be given', () => {
    expect(() => expandCidr('10.0.0.0/28', 8)).toThrow(/at most 8.*10\.0\.0\.0\/29/);
    expect(expandCidr('10.0.0.0/29', 8)).toHaveLength(6);
  });

  test.each([
    ['10.0.0.0'],
    ['10.0.0/24'],
    ['10.0.0.256/32'],
    ['10.0.0.01/32'],
    ['10.0.0.0/33'],
    ['10.0.0.0/024'],
    ['10.0.0.0/-1'],
    ['::1/128'],
    ['fe80::/120'],
    ['localhost/32'],
    [''],
  ])('error: %j is not an IPv4 CIDR range', (cidr) => {
    expect(() => expandCidr(cidr)).toThrow(expect.objectContaining({ code: 'invalid_cidr' }));
  });

  test('error: a bound that is not a positive integer', () => {
    expect(() => expandCidr('10.0.0.0/30', 0)).toThrow(
      expect.objectContaining({ code: 'invalid_option' }),
    );
  });
});
