/**
 * The one error class of @tollgate/test-chain: a stable code plus a message that says what to
 * do, so a suite can tell "anvil is not installed here" (skip) from a real failure.
 */

/** Stable codes of {@link TestChainError}. */
export type TestChainErrorCode =
  | 'anvil_not_found'
  | 'anvil_start_failed'
  | 'compile_failed'
  | 'deploy_failed'
  | 'invalid_argument';

const brand = Symbol.for('tollgate.test-chain.error');

/**
 * Thrown by every function of this package.
 *
 * @example
 * ```ts
 * try {
 *   await startAnvil();
 * } catch (error) {
 *   if (isTestChainError(error) && error.code === 'anvil_not_found') console.log('no anvil here');
 * }
 * ```
 */
export class TestChainError extends Error {
  override name = 'TestChainError';
  /** What went wrong, stable across versions. */
  readonly code: TestChainErrorCode;
  readonly [brand] = true;

  /**
   * @param code - the stable code
   * @param message - what happened and what to do about it
   * @param options - `cause`: the underlying error
   */
  constructor(code: TestChainErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Whether `error` is a {@link TestChainError}, also across duplicate installs of this package.
 *
 * @example
 * ```ts
 * if (isTestChainError(error)) console.log(error.code);
 * ```
 */
export function isTestChainError(error: unknown): error is TestChainError {
  return typeof error === 'object' && error !== null && brand in error;
}
