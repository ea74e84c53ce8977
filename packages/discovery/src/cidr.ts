/**
 * IPv4 CIDR ranges for the opt-in network scan, bounded so a typo cannot start a scan of a
 * whole network.
 */
import { DiscoveryError } from './errors.js';

/** The most addresses a CIDR range may hold (a /24). */
export const MAX_CIDR_ADDRESSES = 256;

const OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const CIDR_PATTERN = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}/(3[0-2]|[12]?\\d)$`);

function formatAddress(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

/**
 * The host addresses of an IPv4 CIDR range, lowest first. For prefixes up to /30 the network
 * and broadcast addresses are left out; a /31 gives both addresses, a /32 the one. Host bits
 * set in the address are ignored (`192.168.1.7/24` is `192.168.1.0/24`).
 *
 * @param cidr - e.g. `"192.168.1.0/28"`.
 * @param maxAddresses - the largest range accepted, in addresses. @default 256
 * @throws {DiscoveryError} `invalid_option` for a `maxAddresses` that is not a positive integer;
 *   `invalid_cidr` for anything but `a.b.c.d/prefix` (IPv6 included);
 *   `cidr_too_large` for a range of more than `maxAddresses` addresses.
 * @example
 * ```ts
 * expandCidr('10.0.0.0/30'); // ['10.0.0.1', '10.0.0.2']
 * ```
 */
export function expandCidr(cidr: string, maxAddresses: number = MAX_CIDR_ADDRESSES): string[] {
  if (!Number.isInteger(maxAddresses) || maxAddresses < 1) {
    throw new DiscoveryError(
      'invalid_option',
      `maxAddresses must be a positive integer, not ${String(maxAddresses)}.`,
    );
  }
  const text = typeof cidr === 'string' ? cidr.trim() : '';
  const match = CIDR_PATTERN.exec(text);
  if (!match) {
    throw new DiscoveryError(
      'invalid_cidr',
      `"${String(cidr)}" is not an IPv4 CIDR range: write it as address/prefix with decimal octets, e.g. 192.168.1.0/28 (IPv6 ranges are not scanned).`,
    );
  }
  const [a, b, c, d, prefix] = match.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const size = 2 ** (32 - prefix);
  const address = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
  const network = prefix === 0 ? 0 : (address & (0xffffffff << (32 - prefix))) >>> 0;
  if (size > maxAddresses) {
    // Suggest the largest allowed range around the address as typed.
    const narrower = 32 - Math.floor(Math.log2(maxAddresses));
    const start = narrower === 0 ? 0 : (address & (0xffffffff << (32 - narrower))) >>> 0;
    throw new DiscoveryError(
      'cidr_too_large',
      `${text} holds ${size} addresses; discovery scans at most ${maxAddresses}. Give a narrower range, e.g. ${formatAddress(start)}/${narrower}.`,
    );
  }
  const first = prefix <= 30 ? network + 1 : network;
  const last = prefix <= 30 ? network + size - 2 : network + size - 1;
  const hosts: string[] = [];
  for (let value = first; value <= last; value++) hosts.push(formatAddress(value));
  return hosts;
}
