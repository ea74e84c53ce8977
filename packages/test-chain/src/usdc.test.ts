import {
  type Address,
  concat,
  createPublicClient,
  createWalletClient,
  type Hex,
  hashDomain,
  http,
  numberToHex,
  type PublicClient,
  parseEventLogs,
  toFunctionSignature,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AnvilChain,
  anvilAvailable,
  BASE_SEPOLIA_USDC_ADDRESS,
  compileContracts,
  deployUsdc,
  isTestChainError,
  localBaseSepolia,
  MULTICALL3_ADDRESS,
  startAnvil,
  type TestUsdc,
  testUsdcAbi,
} from './index.js';
import { nowSeconds, randomNonce, signAuthorization } from './test-helpers.js';

// secp256k1's group order: s and n - s are both valid signatures of the same message.
const CURVE_ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

describe('compileContracts', () => {
  it('behavior: testUsdcAbi matches what solc compiles', () => {
    const compiled = compileContracts().TestUsdc.abi;
    const signatures = (abi: readonly { type: string }[]) =>
      abi
        .filter((item) => item.type === 'function' || item.type === 'event')
        .map((item) => toFunctionSignature(item as Parameters<typeof toFunctionSignature>[0]));
    const compiledSignatures = new Set(signatures(compiled));
    for (const signature of signatures(testUsdcAbi)) {
      expect(compiledSignatures, signature).toContain(signature);
    }
  });

  it('behavior: compiles once per process', () => {
    expect(compileContracts()).toBe(compileContracts());
  });
});

describe.skipIf(!anvilAvailable())('TestUsdc on anvil', () => {
  let chain: AnvilChain;
  let usdc: TestUsdc;
  let client: PublicClient;

  const key = (index: number): Hex => chain.accounts[index]!.privateKey;
  const address = (index: number): Address => chain.accounts[index]!.address;
  const walletOf = (index: number) =>
    createWalletClient({
      account: privateKeyToAccount(key(index)),
      chain: localBaseSepolia(chain.rpcUrl),
      transport: http(chain.rpcUrl),
    });

  async function send(
    index: number,
    request: Parameters<ReturnType<typeof walletOf>['writeContract']>[0],
  ): Promise<Hex> {
    const hash = await walletOf(index).writeContract(request);
    const receipt = await client.waitForTransactionReceipt({ hash, pollingInterval: 50 });
    expect(receipt.status).toBe('success');
    return hash;
  }

  beforeAll(async () => {
    chain = await startAnvil();
    usdc = await deployUsdc(chain);
    client = createPublicClient({
      chain: localBaseSepolia(chain.rpcUrl),
      transport: http(chain.rpcUrl),
    });
  });

  afterAll(async () => {
    await chain?.stop();
  });

  const read = <const name extends 'name' | 'symbol' | 'version' | 'decimals' | 'DOMAIN_SEPARATOR'>(
    functionName: name,
    at: Address = BASE_SEPOLIA_USDC_ADDRESS,
  ) => client.readContract({ address: at, abi: testUsdcAbi, functionName });

  it('behavior: sits at the Base Sepolia USDC address with its metadata', async () => {
    expect(usdc.address).toBe(BASE_SEPOLIA_USDC_ADDRESS);
    expect(await read('name')).toBe('USDC');
    expect(await read('symbol')).toBe('USDC');
    expect(await read('version')).toBe('2');
    expect(await read('decimals')).toBe(6);
    const domain = await client.getEip712Domain({ address: usdc.address });
    expect(domain.domain).toEqual({
      name: 'USDC',
      version: '2',
      chainId: 84532,
      verifyingContract: BASE_SEPOLIA_USDC_ADDRESS,
      salt: `0x${'0'.repeat(64)}`,
    });
  });

  it('behavior: DOMAIN_SEPARATOR is the EIP-712 hash of the domain x402 clients sign', async () => {
    const expected = hashDomain({
      domain: {
        name: 'USDC',
        version: '2',
        chainId: 84532n,
        verifyingContract: BASE_SEPOLIA_USDC_ADDRESS,
      },
      types: {
        EIP712Domain: [
          { name: 'name', type: 'string' },
          { name: 'version', type: 'string' },
          { name: 'chainId', type: 'uint256' },
          { name: 'verifyingContract', type: 'address' },
        ],
      },
    });
    expect(await read('DOMAIN_SEPARATOR')).toBe(expected);
  });

  it('behavior: the domain follows the address the code is placed at', async () => {
    const elsewhere: Address = '0x1111111111111111111111111111111111111111';
    await deployUsdc(chain, { address: elsewhere, multicall3: false });
    expect(await read('DOMAIN_SEPARATOR', elsewhere)).not.toBe(await read('DOMAIN_SEPARATOR'));
    const domain = await client.getEip712Domain({ address: elsewhere });
    expect(domain.domain.verifyingContract).toBe(elsewhere);
  });

  it('behavior: Multicall3 is installed at its canonical address', async () => {
    expect(await client.getCode({ address: MULTICALL3_ADDRESS })).toMatch(/^0x[0-9a-f]{100,}$/);
    const [name, balance] = await client.multicall({
      contracts: [
        { address: usdc.address, abi: testUsdcAbi, functionName: 'name' },
        { address: usdc.address, abi: testUsdcAbi, functionName: 'balanceOf', args: [address(8)] },
      ],
    });
    expect(name).toEqual({ status: 'success', result: 'USDC' });
    expect(balance).toEqual({ status: 'success', result: 0n });
  });

  it('behavior: mint credits the balance and the supply, parallel mints included', async () => {
    const supplyBefore = await client.readContract({
      address: usdc.address,
      abi: testUsdcAbi,
      functionName: 'totalSupply',
    });
    const hashes = await Promise.all([
      usdc.mint(address(3), 1_000_000n),
      usdc.mint(address(3), 500n),
    ]);
    expect(new Set(hashes).size).toBe(2);
    expect(await usdc.balanceOf(address(3))).toBe(1_000_500n);
    expect(
      await client.readContract({
        address: usdc.address,
        abi: testUsdcAbi,
        functionName: 'totalSupply',
      }),
    ).toBe(supplyBefore + 1_000_500n);
  });

  it('behavior: transfer, approve and transferFrom move balances', async () => {
    await usdc.mint(address(4), 1000n);
    await send(4, {
      address: usdc.address,
      abi: testUsdcAbi,
      functionName: 'transfer',
      args: [address(5), 100n],
    });
    await send(4, {
      address: usdc.address,
      abi: testUsdcAbi,
      functionName: 'approve',
      args: [address(5), 300n],
    });
    await send(5, {
      address: usdc.address,
      abi: testUsdcAbi,
      functionName: 'transferFrom',
      args: [address(4), address(6), 200n],
    });
    expect(await usdc.balanceOf(address(4))).toBe(700n);
    expect(await usdc.balanceOf(address(5))).toBe(100n);
    expect(await usdc.balanceOf(address(6))).toBe(200n);
    await expect(
      client.simulateContract({
        account: address(5),
        address: usdc.address,
        abi: testUsdcAbi,
        functionName: 'transferFrom',
        args: [address(4), address(6), 101n],
      }),
    ).rejects.toThrow(/transfer amount exceeds allowance/);
  });

  describe('transferWithAuthorization', () => {
    const payer = 1;
    const payee = 2;

    beforeAll(async () => {
      await usdc.mint(address(payer), 10_000_000n);
    });

    const simulateSplit = (
      signed: Awaited<ReturnType<typeof signAuthorization>>,
      s = signed.s,
      v = signed.v,
    ) => {
      const a = signed.authorization;
      return client.simulateContract({
        account: address(0),
        address: usdc.address,
        abi: testUsdcAbi,
        functionName: 'transferWithAuthorization',
        args: [a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, v, signed.r, s],
      });
    };

    it('behavior: (v, r, s) moves exactly the value and uses the nonce', async () => {
      const signed = await signAuthorization({
        payerKey: key(payer),
        to: address(payee),
        value: 1234n,
      });
      const before = [await usdc.balanceOf(address(payer)), await usdc.balanceOf(address(payee))];
      const { request } = await simulateSplit(signed);
      const hash = await send(0, request);
      const receipt = await client.getTransactionReceipt({ hash });
      const events = parseEventLogs({ abi: testUsdcAbi, logs: receipt.logs });
      expect(events.map((event) => event.eventName)).toEqual(['AuthorizationUsed', 'Transfer']);
      expect(await usdc.balanceOf(address(payer))).toBe(before[0]! - 1234n);
      expect(await usdc.balanceOf(address(payee))).toBe(before[1]! + 1234n);
      expect(await usdc.authorizationState(address(payer), signed.authorization.nonce)).toBe(true);
      await expect(simulateSplit(signed)).rejects.toThrow(/authorization is used or canceled/);
    });

    it('behavior: the bytes-signature overload works too', async () => {
      const signed = await signAuthorization({
        payerKey: key(payer),
        to: address(payee),
        value: 7n,
      });
      const a = signed.authorization;
      const before = await usdc.balanceOf(address(payee));
      await send(0, {
        address: usdc.address,
        abi: testUsdcAbi,
        functionName: 'transferWithAuthorization',
        args: [a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, signed.signature],
      });
      expect(await usdc.balanceOf(address(payee))).toBe(before + 7n);
    });

    it('error: a signature over the domain name "USD Coin" is invalid', async () => {
      const signed = await signAuthorization({
        payerKey: key(payer),
        to: address(payee),
        value: 1n,
        domainName: 'USD Coin',
      });
      await expect(simulateSplit(signed)).rejects.toThrow(/invalid signature/);
    });

    it('error: a signature by someone else is invalid', async () => {
      const signed = await signAuthorization({ payerKey: key(7), to: address(payee), value: 1n });
      signed.authorization.from = address(payer);
      await expect(simulateSplit(signed)).rejects.toThrow(/invalid signature/);
    });

    it('error: the malleable high-s twin of a valid signature is refused', async () => {
      const signed = await signAuthorization({
        payerKey: key(payer),
        to: address(payee),
        value: 1n,
      });
      const highS = numberToHex(CURVE_ORDER - BigInt(signed.s), { size: 32 });
      await expect(simulateSplit(signed, highS, signed.v === 27 ? 28 : 27)).rejects.toThrow(
        /invalid signature/,
      );
      const packed = concat([signed.r, highS, numberToHex(signed.v === 27 ? 28 : 27, { size: 1 })]);
      const a = signed.authorization;
      await expect(
        client.simulateContract({
          account: address(0),
          address: usdc.address,
          abi: testUsdcAbi,
          functionName: 'transferWithAuthorization',
          args: [a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, packed],
        }),
      ).rejects.toThrow(/invalid signature/);
      // The low-s original is still good.
      await expect(simulateSplit(signed)).resolves.toBeDefined();
    });

    it('error: v other than 27 or 28 is refused', async () => {
      const signed = await signAuthorization({
        payerKey: key(payer),
        to: address(payee),
        value: 1n,
      });
      await expect(simulateSplit(signed, signed.s, signed.v - 27)).rejects.toThrow(
        /invalid signature/,
      );
    });

    it('error: before validAfter and from validBefore on the authorization is refused', async () => {
      const early = await signAuthorization({
        payerKey: key(payer),
        to: address(payee),
        value: 1n,
        validAfter: nowSeconds() + 3600n,
      });
      await expect(simulateSplit(early)).rejects.toThrow(/authorization is not yet valid/);
      const late = await signAuthorization({
        payerKey: key(payer),
        to: address(payee),
        value: 1n,
        validBefore: nowSeconds() - 1n,
      });
      await expect(simulateSplit(late)).rejects.toThrow(/authorization is expired/);
    });

    it('error: more than the balance is refused', async () => {
      const signed = await signAuthorization({
        payerKey: key(payer),
        to: address(payee),
        value: 10n ** 18n,
      });
      await expect(simulateSplit(signed)).rejects.toThrow(/transfer amount exceeds balance/);
    });

    it('behavior: receiveWithAuthorization is for the payee only', async () => {
      const signed = await signAuthorization({
        payerKey: key(payer),
        to: address(payee),
        value: 5n,
        primaryType: 'ReceiveWithAuthorization',
      });
      const a = signed.authorization;
      const args = [
        a.from,
        a.to,
        a.value,
        a.validAfter,
        a.validBefore,
        a.nonce,
        signed.v,
        signed.r,
        signed.s,
      ] as const;
      await expect(
        client.simulateContract({
          account: address(0),
          address: usdc.address,
          abi: testUsdcAbi,
          functionName: 'receiveWithAuthorization',
          args,
        }),
      ).rejects.toThrow(/caller must be the payee/);
      const before = await usdc.balanceOf(address(payee));
      await send(payee, {
        address: usdc.address,
        abi: testUsdcAbi,
        functionName: 'receiveWithAuthorization',
        args,
      });
      expect(await usdc.balanceOf(address(payee))).toBe(before + 5n);
    });

    it('behavior: cancelAuthorization burns a nonce', async () => {
      const signed = await signAuthorization({
        payerKey: key(payer),
        to: address(payee),
        value: 1n,
      });
      const cancel = await privateKeyToAccount(key(payer)).signTypedData({
        domain: { name: 'USDC', version: '2', chainId: 84532, verifyingContract: usdc.address },
        types: {
          CancelAuthorization: [
            { name: 'authorizer', type: 'address' },
            { name: 'nonce', type: 'bytes32' },
          ],
        },
        primaryType: 'CancelAuthorization',
        message: { authorizer: address(payer), nonce: signed.authorization.nonce },
      });
      const r = `0x${cancel.slice(2, 66)}` as Hex;
      const s = `0x${cancel.slice(66, 130)}` as Hex;
      const v = Number.parseInt(cancel.slice(130, 132), 16);
      await send(0, {
        address: usdc.address,
        abi: testUsdcAbi,
        functionName: 'cancelAuthorization',
        args: [address(payer), signed.authorization.nonce, v, r, s],
      });
      expect(await usdc.authorizationState(address(payer), signed.authorization.nonce)).toBe(true);
      await expect(simulateSplit(signed)).rejects.toThrow(/authorization is used or canceled/);
      expect(await usdc.authorizationState(address(payer), randomNonce())).toBe(false);
    });
  });

  it('error: deployUsdc refuses a malformed address', async () => {
    const error = await deployUsdc(chain, { address: '0x1234' as Address }).catch(
      (e: unknown) => e,
    );
    expect(isTestChainError(error) && error.code).toBe('invalid_argument');
  });
});
