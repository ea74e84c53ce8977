import {
  domainSeparator,
  encodeAbiParameters,
  type Hex,
  hashDomain,
  keccak256,
  stringToHex,
} from 'viem';
import { describe, expect, it } from 'vitest';
import {
  chainIdOf,
  findNetwork,
  NETWORKS,
  type NetworkInfo,
  TRANSFER_WITH_AUTHORIZATION_TYPES,
  toCaip2,
} from './index.js';

/**
 * The USDC contracts' EIP-712 domain separators, computed once with viem and equal to the
 * `DOMAIN_SEPARATOR()` values read from the contracts on Base and Base Sepolia as recorded
 * in several public repositories. A wrong domain name or version changes them, and then
 * every signature a client makes fails on-chain while looking fine everywhere else.
 */
const BASE_USDC_DOMAIN_SEPARATOR =
  '0x02fa7265e7c5d81118673727957699e4d68f74cd74b7db77da710fe8a2c7834f';
const BASE_SEPOLIA_USDC_DOMAIN_SEPARATOR =
  '0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818';

/** keccak256 of the EIP-712 domain type string (EIP-712 and OpenZeppelin's EIP712). */
const EIP712_DOMAIN_TYPEHASH = '0x8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f';
/** EIP-3009's TRANSFER_WITH_AUTHORIZATION_TYPEHASH constant. */
const TRANSFER_WITH_AUTHORIZATION_TYPEHASH =
  '0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267';

const network = (id: string): NetworkInfo => NETWORKS.find((entry) => entry.id === id)!;

/** The domain of a network's USDC as the verifying contract signs it. */
function domainOf(entry: NetworkInfo) {
  return {
    name: entry.usdc.name,
    version: entry.usdc.version,
    chainId: entry.chainId,
    verifyingContract: entry.usdc.address,
  };
}

/** The EIP-712 domain separator from its definition, without viem's typed-data code. */
function separatorByHand(domain: ReturnType<typeof domainOf>): Hex {
  const typeHash = keccak256(
    stringToHex(
      'EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)',
    ),
  );
  expect(typeHash).toBe(EIP712_DOMAIN_TYPEHASH);
  return keccak256(
    encodeAbiParameters(
      [
        { type: 'bytes32' },
        { type: 'bytes32' },
        { type: 'bytes32' },
        { type: 'uint256' },
        { type: 'address' },
      ],
      [
        typeHash,
        keccak256(stringToHex(domain.name)),
        keccak256(stringToHex(domain.version)),
        BigInt(domain.chainId),
        domain.verifyingContract,
      ],
    ),
  );
}

describe('USDC EIP-712 domains', () => {
  it.each([
    ['Base', 'eip155:8453', 'USD Coin', 8453, BASE_USDC_DOMAIN_SEPARATOR],
    ['Base Sepolia', 'eip155:84532', 'USDC', 84532, BASE_SEPOLIA_USDC_DOMAIN_SEPARATOR],
  ] as const)(
    'behavior: %s USDC has the pinned domain separator',
    (_name, id, name, chainId, pinned) => {
      const entry = network(id);
      expect(entry.usdc.name).toBe(name);
      expect(entry.usdc.version).toBe('2');
      expect(entry.usdc.decimals).toBe(6);
      expect(entry.chainId).toBe(chainId);
      const domain = domainOf(entry);
      expect(domainSeparator({ domain })).toBe(pinned);
      expect(
        hashDomain({
          domain: { ...domain, chainId: BigInt(domain.chainId) },
          types: {
            EIP712Domain: [
              { name: 'name', type: 'string' },
              { name: 'version', type: 'string' },
              { name: 'chainId', type: 'uint256' },
              { name: 'verifyingContract', type: 'address' },
            ],
          },
        }),
      ).toBe(pinned);
      expect(separatorByHand(domain)).toBe(pinned);
    },
  );

  it("behavior: the other network's domain name gives another separator", () => {
    const sepolia = domainOf(network('eip155:84532'));
    const mainnet = domainOf(network('eip155:8453'));
    expect(separatorByHand({ ...sepolia, name: 'USD Coin' })).not.toBe(
      BASE_SEPOLIA_USDC_DOMAIN_SEPARATOR,
    );
    expect(separatorByHand({ ...mainnet, name: 'USDC' })).not.toBe(BASE_USDC_DOMAIN_SEPARATOR);
  });

  it('behavior: the signed type is EIP-3009 TransferWithAuthorization', () => {
    const fields = TRANSFER_WITH_AUTHORIZATION_TYPES.TransferWithAuthorization.map(
      (field) => `${field.type} ${field.name}`,
    ).join(',');
    expect(keccak256(stringToHex(`TransferWithAuthorization(${fields})`))).toBe(
      TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
    );
  });
});

describe('network names', () => {
  it('behavior: v1 names and CAIP-2 ids name the same networks', () => {
    expect(toCaip2('base')).toBe('eip155:8453');
    expect(toCaip2('base-sepolia')).toBe('eip155:84532');
    expect(toCaip2('eip155:84532')).toBe('eip155:84532');
    expect(toCaip2('eip155:1')).toBe('eip155:1');
    expect(chainIdOf('base-sepolia')).toBe(84532);
    expect(chainIdOf('eip155:10')).toBe(10);
    expect(findNetwork('base')?.usdc.address).toBe('0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913');
    expect(findNetwork('eip155:84532')?.usdc.address).toBe(
      '0x036CbD53842c5426634e7929541eC2318f3dCF7e',
    );
    expect(findNetwork('eip155:84532')?.v1Name).toBe('base-sepolia');
  });

  it.each(['solana', 'eip155:0', 'eip155:', 'eip155:01', 'EIP155:8453', 'base sepolia', ''])(
    'error: %j is not an EVM network',
    (name) => {
      expect(toCaip2(name)).toBeUndefined();
      expect(chainIdOf(name)).toBeUndefined();
      expect(findNetwork(name)).toBeUndefined();
    },
  );

  it('behavior: an eip155 network without a known USDC has a chain id but no entry', () => {
    expect(chainIdOf('eip155:1')).toBe(1);
    expect(findNetwork('eip155:1')).toBeUndefined();
  });
});
