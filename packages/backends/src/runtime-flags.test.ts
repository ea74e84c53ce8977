/**
 * Runtime flags from API callers: the allowlist per server type, value checks, and the refusal
 * of anything that could name a file.
 */
import { isTollgateError } from '@tollgate/protocol';
import { describe, expect, it } from 'vitest';
import { allowedRuntimeFlags, splitCommandLine, validateRuntimeFlags } from './index.js';

function refusal(run: () => unknown): {
  status: number;
  code: string;
  param: string | null;
  message: string;
} {
  try {
    run();
  } catch (error) {
    if (!isTollgateError(error)) throw error;
    return { status: error.status, code: error.code, param: error.param, message: error.message };
  }
  throw new Error('expected a refusal');
}

describe('validateRuntimeFlags', () => {
  const accepted: Array<[string, string[]]> = [
    ['context size, short and long', ['-c', '8192', '--ctx-size', '4096']],
    ['inline values', ['--ctx-size=8192', '--n-gpu-layers=99']],
    ['GPU layers as a word', ['-ngl', 'all', '--gpu-layers', 'auto']],
    ['threads, -1 meaning default', ['--threads', '-1', '-tb', '8']],
    ['slots and batches', ['-np', '4', '-b', '2048', '-ub', '512']],
    ['flash attention', ['-fa', 'on']],
    ['KV cache types', ['-ctk', 'q8_0', '-ctv', 'q4_0']],
    ['switches', ['--no-context-shift', '--jinja', '-kvu', '--no-warmup']],
    ['tensor split', ['-ts', '3,1']],
    ['sampling defaults', ['--temp', '0.7', '--top-p', '0.9', '--min-p', '.05', '--seed', '42']],
    ['RoPE', ['--rope-scaling', 'yarn', '--rope-scale', '4', '--yarn-orig-ctx', '32768']],
    ['nothing', []],
  ];
  for (const [name, flags] of accepted) {
    it(`behavior: llama-server accepts ${name}`, () => {
      expect(validateRuntimeFlags('llama-server', flags)).toEqual(flags);
    });
  }

  const refused: Array<[string, unknown, RegExp]> = [
    ['a model path', ['--model', '/etc/passwd'], /path separator/],
    ['a Windows path', ['-c', 'C:\\models\\x'], /path separator/],
    ['a path inline', ['--ctx-size=../x'], /path separator/],
    ['a relative path hidden in a word', ['-ctk', 'a/b'], /path separator/],
    ['a flag not on the list', ['--model', 'x.gguf'], /"--model" is not allowed.*Allowed flags/],
    ['the port', ['--port', '9999'], /"--port" is not allowed/],
    ['the host', ['--host', '0.0.0.0'], /"--host" is not allowed/],
    ['an API key', ['--api-key', 'secret'], /"--api-key" is not allowed/],
    ['a download', ['-hf', 'user-model'], /"-hf" is not allowed/],
    ['a value that is not a number', ['-c', 'lots'], /-c takes a whole number, not "lots"/],
    ['a value below the range', ['-b', '0'], /at least 1/],
    ['a fraction where a whole number goes', ['-c', '1.5'], /whole number/],
    ['a word not among the choices', ['-fa', 'maybe'], /takes one of on, off, auto/],
    ['a KV type llama.cpp lacks', ['-ctk', 'q2_k'], /takes one of f32, f16/],
    ['a probability above 1', ['--top-p', '1.5'], /at most 1/],
    ['a flag without its value', ['-c'], /-c needs a value/],
    ['a value on its own', ['8192'], /Unexpected value "8192"/],
    ['a value given to a switch', ['--jinja=yes'], /takes no value/],
    ['spaces inside a token', ['-c 8192'], /spaces/],
    ['shell characters', ['-c', '1;rm'], /whole number/],
    ['an empty token', [''], /empty/],
    ['not an array', '--ctx-size 8192', /must be an array of strings/],
    ['numbers instead of strings', ['-c', 8192], /must be an array of strings/],
    ['too many tokens', Array.from({ length: 65 }, () => '--jinja'), /Too many flags/],
  ];
  for (const [name, flags, message] of refused) {
    it(`error: refuses ${name} with 400 invalid_request`, () => {
      const error = refusal(() => validateRuntimeFlags('llama-server', flags));
      expect(error).toMatchObject({ status: 400, code: 'invalid_request', param: 'flags' });
      expect(error.message).toMatch(message);
    });
  }

  it('behavior: vLLM has its own list', () => {
    expect(
      validateRuntimeFlags('vllm', ['--max-model-len', '8192', '--gpu-memory-utilization', '0.8']),
    ).toHaveLength(4);
    expect(refusal(() => validateRuntimeFlags('vllm', ['-c', '8192'])).message).toMatch(
      /"-c" is not allowed for vllm/,
    );
    expect(refusal(() => validateRuntimeFlags('vllm', ['--trust-remote-code'])).message).toMatch(
      /not allowed/,
    );
  });

  it('behavior: server types without a list take no runtime flags', () => {
    expect(validateRuntimeFlags('mlx', [])).toEqual([]);
    expect(refusal(() => validateRuntimeFlags('mlx', ['--max-tokens', '5'])).message).toMatch(
      /mlx takes no runtime flags/,
    );
  });

  it("behavior: the operator's allowedFlags replace the built-in list", () => {
    const options = { allowedFlags: ['--ctx-size', '--custom'], subject: 'model "m"' };
    // Any spelling of a listed flag, with the built-in value check.
    expect(validateRuntimeFlags('llama-server', ['-c', '1024'], options)).toEqual(['-c', '1024']);
    expect(
      refusal(() => validateRuntimeFlags('llama-server', ['-c', 'big'], options)).message,
    ).toMatch(/whole number/);
    // A flag the built-in list does not know: a switch or one simple value.
    expect(validateRuntimeFlags('llama-server', ['--custom', 'fast'], options)).toHaveLength(2);
    expect(validateRuntimeFlags('llama-server', ['--custom=3', '--custom'], options)).toHaveLength(
      2,
    );
    expect(
      refusal(() => validateRuntimeFlags('llama-server', ['--custom', 'a/b'], options)).message,
    ).toMatch(/path separator/);
    // Built-in flags not listed are refused, naming the model and its list.
    expect(
      refusal(() => validateRuntimeFlags('llama-server', ['-ngl', '9'], options)).message,
    ).toBe(
      'The flag "-ngl" is not allowed for model "m". Allowed flags for model "m": --ctx-size, --custom.',
    );
    expect(
      refusal(() => validateRuntimeFlags('llama-server', ['-c', '1'], { allowedFlags: [] }))
        .message,
    ).toMatch(/takes no runtime flags/);
  });

  it('behavior: allowedRuntimeFlags lists every spelling', () => {
    expect(allowedRuntimeFlags('llama-server')).toEqual(
      expect.arrayContaining(['-c', '--ctx-size', '-ngl', '--n-gpu-layers', '-np', '--parallel']),
    );
    expect(allowedRuntimeFlags('llama-server')).not.toContain('--model');
    expect(allowedRuntimeFlags('openai')).toEqual([]);
  });
});

describe('splitCommandLine', () => {
  const PORT = `\${PORT}`;
  const cases: Array<[string, string[]]> = [
    [
      `llama-server -m model.gguf --port \${PORT}`,
      ['llama-server', '-m', 'model.gguf', '--port', PORT],
    ],
    ['  a   \'b c\'  "d e" ', ['a', 'b c', 'd e']],
    ["a \"q\\\"uote\" 'it''s'", ['a', 'q"uote', 'its']],
    ['a\\ b c', ['a b', 'c']],
    ['x "a\\nb" "\\$PORT"', ['x', 'a\\nb', '$PORT']],
    ['one \\\n two', ['one', 'two']],
    ["a '' b", ['a', '', 'b']],
    ['', []],
  ];
  for (const [command, args] of cases) {
    it(`behavior: splits ${JSON.stringify(command)}`, () => {
      expect(splitCommandLine(command)).toEqual(args);
    });
  }

  it('error: unclosed quotes and a trailing backslash', () => {
    expect(() => splitCommandLine("a 'b")).toThrow(/Unclosed single quote/);
    expect(() => splitCommandLine('a "b')).toThrow(/Unclosed double quote/);
    expect(() => splitCommandLine('a \\')).toThrow(/lone backslash/);
  });
});
