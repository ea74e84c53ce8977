/**
 * Checks the command-line flags an API caller asks a supervised server to start with. Only
 * flags on a per-server allowlist pass, with values that are numbers or simple words; nothing
 * that names a file, a URL, a host or a key, and no value containing `/` or `\`. The
 * operator's own configured command is never checked: this guards the API, not the operator.
 */
import { TollgateError } from '@tollgate/protocol';
import type { BackendKind } from './backend.js';

/** What value a flag takes. */
type FlagValue =
  | { kind: 'switch' }
  | { kind: 'integer'; min?: number; words?: readonly string[] }
  | { kind: 'number'; min?: number; max?: number }
  | { kind: 'numbers' }
  | { kind: 'choice'; words: readonly string[] }
  | { kind: 'word' };

interface FlagSpec {
  /** Every spelling of the flag, e.g. `-c` and `--ctx-size`. */
  names: readonly string[];
  value: FlagValue;
}

const integer = (min?: number, words?: readonly string[]): FlagValue => ({
  kind: 'integer',
  ...(min === undefined ? {} : { min }),
  ...(words ? { words } : {}),
});
const number = (min?: number, max?: number): FlagValue => ({
  kind: 'number',
  ...(min === undefined ? {} : { min }),
  ...(max === undefined ? {} : { max }),
});
const choice = (...words: string[]): FlagValue => ({ kind: 'choice', words });
const switchFlag: FlagValue = { kind: 'switch' };
const kvTypes = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'iq4_nl', 'q5_0', 'q5_1'];

/**
 * llama-server: context, offloading, threads, slots, batching, KV cache types, RoPE scaling and
 * sampling defaults. Left out on purpose: anything taking a path or URL (`--model`, `--lora`,
 * `--log-file`, `--slot-save-path`, `--path`...), the network (`--host`, `--port`, `--api-key`,
 * CORS), downloads (`-hf`, `--model-url`), tools and agents, and templates.
 */
const llamaServerFlags: FlagSpec[] = [
  { names: ['-c', '--ctx-size'], value: integer(0) },
  { names: ['-ngl', '--gpu-layers', '--n-gpu-layers'], value: integer(0, ['auto', 'all']) },
  { names: ['-t', '--threads'], value: integer(-1) },
  { names: ['-tb', '--threads-batch'], value: integer(-1) },
  { names: ['-np', '--parallel'], value: integer(-1) },
  { names: ['-b', '--batch-size'], value: integer(1) },
  { names: ['-ub', '--ubatch-size'], value: integer(1) },
  { names: ['-n', '--predict', '--n-predict'], value: integer(-1) },
  { names: ['--keep'], value: integer(-1) },
  { names: ['-fa', '--flash-attn'], value: choice('on', 'off', 'auto') },
  { names: ['-ctk', '--cache-type-k'], value: choice(...kvTypes) },
  { names: ['-ctv', '--cache-type-v'], value: choice(...kvTypes) },
  { names: ['-kvu', '--kv-unified', '-no-kvu', '--no-kv-unified'], value: switchFlag },
  { names: ['-cb', '--cont-batching', '-nocb', '--no-cont-batching'], value: switchFlag },
  { names: ['--context-shift', '--no-context-shift'], value: switchFlag },
  { names: ['--cache-prompt', '--no-cache-prompt'], value: switchFlag },
  { names: ['--cache-reuse'], value: integer(0) },
  { names: ['-cram', '--cache-ram'], value: integer(-1) },
  { names: ['--swa-full'], value: switchFlag },
  { names: ['--warmup', '--no-warmup'], value: switchFlag },
  { names: ['--jinja', '--no-jinja'], value: switchFlag },
  { names: ['-sm', '--split-mode'], value: choice('none', 'layer', 'row') },
  { names: ['-ts', '--tensor-split'], value: { kind: 'numbers' } },
  { names: ['-mg', '--main-gpu'], value: integer(0) },
  { names: ['--rope-scaling'], value: choice('none', 'linear', 'yarn') },
  { names: ['--rope-scale'], value: number(0) },
  { names: ['--rope-freq-base'], value: number(0) },
  { names: ['--rope-freq-scale'], value: number(0) },
  { names: ['--yarn-orig-ctx'], value: integer(0) },
  { names: ['--pooling'], value: choice('none', 'mean', 'cls', 'last', 'rank') },
  { names: ['--reasoning-format'], value: choice('none', 'deepseek', 'deepseek-legacy', 'auto') },
  { names: ['--reasoning-budget'], value: integer(-1) },
  { names: ['-s', '--seed'], value: integer(-1) },
  { names: ['--temp', '--temperature'], value: number(0) },
  { names: ['--top-k'], value: integer(0) },
  { names: ['--top-p'], value: number(0, 1) },
  { names: ['--min-p'], value: number(0, 1) },
  { names: ['--repeat-penalty'], value: number(0) },
  { names: ['--repeat-last-n'], value: integer(-1) },
  { names: ['--presence-penalty'], value: number() },
  { names: ['--frequency-penalty'], value: number() },
];

/**
 * vLLM: context length, memory share, sequences and batching, parallelism, dtypes and a few
 * switches. Left out: model, tokenizer and download options (names and paths), the network,
 * keys, and anything that runs remote code.
 */
const vllmFlags: FlagSpec[] = [
  { names: ['--max-model-len'], value: integer(1) },
  { names: ['--gpu-memory-utilization'], value: number(0, 1) },
  { names: ['--max-num-seqs'], value: integer(1) },
  { names: ['--max-num-batched-tokens'], value: integer(1) },
  { names: ['-tp', '--tensor-parallel-size'], value: integer(1) },
  { names: ['-pp', '--pipeline-parallel-size'], value: integer(1) },
  { names: ['--dtype'], value: choice('auto', 'half', 'float16', 'bfloat16', 'float', 'float32') },
  { names: ['--kv-cache-dtype'], value: choice('auto', 'fp8', 'fp8_e4m3', 'fp8_e5m2') },
  { names: ['--swap-space'], value: number(0) },
  { names: ['--seed'], value: integer(0) },
  { names: ['--enforce-eager'], value: switchFlag },
  { names: ['--enable-prefix-caching', '--no-enable-prefix-caching'], value: switchFlag },
];

const allowlists: Partial<Record<BackendKind, FlagSpec[]>> = {
  'llama-server': llamaServerFlags,
  vllm: vllmFlags,
};

/** Options for {@link validateRuntimeFlags}. */
export interface ValidateRuntimeFlagsOptions {
  /**
   * The operator's own allowlist for this model, replacing the server type's: flag names
   * (any spelling). Flags the built-in list knows keep their value checks; others take a simple
   * word or number (`--flag=value`, `--flag value`) or nothing. `[]` allows no runtime flags.
   * @default the server type's built-in allowlist
   */
  allowedFlags?: readonly string[];
  /** Used in error messages, e.g. the model's id. @default the server type */
  subject?: string;
}

const MAX_FLAGS = 64;
const MAX_TOKEN_LENGTH = 128;
const SIMPLE_WORD = /^[A-Za-z0-9][A-Za-z0-9._:+-]*$/;
const INTEGER = /^-?\d{1,12}$/;
const NUMBER = /^-?(?:\d{1,12}(?:\.\d{1,12})?|\.\d{1,12})(?:e-?\d{1,3})?$/i;
const FLAG_NAME = /^--?[A-Za-z][A-Za-z0-9-]*$/;

function hasSpaceOrControl(token: string): boolean {
  for (let index = 0; index < token.length; index++) {
    const code = token.charCodeAt(index);
    if (code <= 0x20 || code === 0x7f || /\s/.test(token[index]!)) return true;
  }
  return false;
}

function refuse(message: string): TollgateError {
  return new TollgateError('invalid_request', message, { param: 'flags' });
}

function quote(value: string): string {
  return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value);
}

/** The built-in flag names allowed for a server type (every spelling), for messages and docs. */
export function allowedRuntimeFlags(type: BackendKind): string[] {
  return (allowlists[type] ?? []).flatMap((spec) => spec.names);
}

function findSpec(specs: readonly FlagSpec[], name: string): FlagSpec | undefined {
  return specs.find((spec) => spec.names.includes(name));
}

/** Checks one value against what its flag takes; returns a reason when it does not fit. */
function checkValue(value: string, spec: FlagValue): string | undefined {
  switch (spec.kind) {
    case 'switch':
      return 'takes no value';
    case 'integer': {
      if (spec.words?.includes(value)) return undefined;
      const words = spec.words?.length ? ` or one of ${spec.words.join(', ')}` : '';
      if (!INTEGER.test(value)) return `takes a whole number${words}`;
      if (spec.min !== undefined && Number(value) < spec.min)
        return `takes a whole number of at least ${spec.min}${words}`;
      return undefined;
    }
    case 'number': {
      if (!NUMBER.test(value)) return 'takes a number';
      const parsed = Number(value);
      if (spec.min !== undefined && parsed < spec.min)
        return `takes a number of at least ${spec.min}`;
      if (spec.max !== undefined && parsed > spec.max)
        return `takes a number of at most ${spec.max}`;
      return undefined;
    }
    case 'numbers':
      return value.split(',').every((part) => NUMBER.test(part))
        ? undefined
        : 'takes comma-separated numbers';
    case 'choice':
      return spec.words.includes(value) ? undefined : `takes one of ${spec.words.join(', ')}`;
    default:
      return SIMPLE_WORD.test(value) ? undefined : 'takes a number or a simple word';
  }
}

/**
 * Checks the flags an API caller wants a supervised server started with, and returns them as
 * separate tokens (`--ctx-size=8192` stays as given). Flags must be on the server type's
 * allowlist (or the model's `allowedFlags`), values must be numbers or simple words from the
 * flag's range, and no token may contain `/` or `\`, so a caller can never point the server at
 * a file. Use this only for flags that come from API callers; the operator's configured
 * command is trusted as it is.
 *
 * @param type The server type (`llama-server` and `vllm` have built-in allowlists; other types
 *   allow nothing unless `allowedFlags` says otherwise).
 * @param flags Tokens as a command line would have them, e.g. `['--ctx-size', '8192', '-ngl', '99']`.
 * @throws {TollgateError} `invalid_request` (400, `param: "flags"`) naming the first flag or
 *   value refused and why.
 * @example
 * ```ts
 * validateRuntimeFlags('llama-server', ['-c', '8192', '--flash-attn', 'on']); // passes
 * validateRuntimeFlags('llama-server', ['--model', '/etc/passwd']); // throws: contains a path
 * ```
 */
export function validateRuntimeFlags(
  type: BackendKind,
  flags: unknown,
  options: ValidateRuntimeFlagsOptions = {},
): string[] {
  const subject = options.subject ?? type;
  if (!Array.isArray(flags) || flags.some((flag) => typeof flag !== 'string')) {
    throw refuse('"flags" must be an array of strings, e.g. ["--ctx-size", "8192"].');
  }
  if (flags.length > MAX_FLAGS) {
    throw refuse(`Too many flags (${flags.length}); at most ${MAX_FLAGS} tokens are accepted.`);
  }
  const builtIn = allowlists[type] ?? [];
  const allowed = options.allowedFlags;
  const describeAllowed = () => {
    const names = allowed ?? allowedRuntimeFlags(type);
    return names.length
      ? `Allowed flags for ${subject}: ${names.join(', ')}.`
      : `${subject} takes no runtime flags.`;
  };

  const tokens = flags as string[];
  for (const token of tokens) {
    if (token.includes('/') || token.includes('\\')) {
      throw refuse(
        `The flag value ${quote(token)} contains a path separator ("/" or "\\"); runtime flags cannot name files. Ask the operator to put file options in the model's configured command.`,
      );
    }
    if (token === '' || token.length > MAX_TOKEN_LENGTH || hasSpaceOrControl(token)) {
      throw refuse(
        `The flag ${quote(token)} is empty, too long or contains spaces or control characters; pass each flag and value as its own string.`,
      );
    }
  }

  for (let index = 0; index < tokens.length; index++) {
    const token = tokens[index]!;
    if (!token.startsWith('-') || INTEGER.test(token) || NUMBER.test(token)) {
      throw refuse(
        `Unexpected value ${quote(token)}: every value must follow its flag (e.g. ["--ctx-size", "8192"]).`,
      );
    }
    const equals = token.indexOf('=');
    const name = equals > 0 ? token.slice(0, equals) : token;
    const inline = equals > 0 ? token.slice(equals + 1) : undefined;
    if (!FLAG_NAME.test(name)) throw refuse(`${quote(name)} is not a flag name.`);

    let spec = findSpec(builtIn, name);
    if (allowed) {
      const listed = allowed.includes(name) || spec?.names.some((alias) => allowed.includes(alias));
      if (!listed) {
        throw refuse(`The flag ${quote(name)} is not allowed for ${subject}. ${describeAllowed()}`);
      }
    } else if (!spec) {
      throw refuse(`The flag ${quote(name)} is not allowed for ${subject}. ${describeAllowed()}`);
    }

    if (!spec) {
      // A flag the operator allowed that the built-in list does not know: a switch, or one
      // simple value.
      const next = tokens[index + 1];
      const value =
        inline ??
        (next !== undefined && (!next.startsWith('-') || NUMBER.test(next)) ? next : undefined);
      if (value !== undefined && inline === undefined) index++;
      spec = { names: [name], value: value === undefined ? switchFlag : { kind: 'word' } };
      if (value === undefined) continue;
      const problem = checkValue(value, spec.value);
      if (problem) throw refuse(`The flag ${name} ${problem}, not ${quote(value)}.`);
      continue;
    }

    if (spec.value.kind === 'switch') {
      if (inline !== undefined) throw refuse(`The flag ${name} takes no value.`);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      value = tokens[index + 1];
      if (value === undefined) throw refuse(`The flag ${name} needs a value.`);
      index++;
    }
    const problem = checkValue(value, spec.value);
    if (problem) throw refuse(`The flag ${name} ${problem}, not ${quote(value)}.`);
  }
  return [...tokens];
}
