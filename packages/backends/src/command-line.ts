/**
 * Splits a command line written as one string into its arguments, the way a POSIX shell
 * would for plain words and quotes, without running a shell: no variables, globs, pipes or
 * redirections, so what the operator wrote is exactly what runs.
 */

/**
 * Splits a command line into arguments: whitespace separates them; single quotes keep
 * everything literally; double quotes keep spaces and honour `\"`, `\\`, `\$` and `` \` ``;
 * outside quotes a backslash keeps the next character. `${PORT}` and other `$` text is left as
 * it is.
 *
 * @throws {SyntaxError} for an unclosed quote or a trailing backslash.
 * @example
 * ```ts
 * splitCommandLine(`llama-server -m '/models/My Model.gguf' --port \${PORT}`);
 * // ['llama-server', '-m', '/models/My Model.gguf', '--port', '${PORT}']
 * ```
 */
export function splitCommandLine(command: string): string[] {
  const args: string[] = [];
  let current = '';
  let inWord = false;
  let index = 0;
  while (index < command.length) {
    const char = command[index]!;
    if (char === ' ' || char === '\t' || char === '\n' || char === '\r') {
      if (inWord) args.push(current);
      current = '';
      inWord = false;
      index++;
      continue;
    }
    if (char === '\\' && command[index + 1] === '\n') {
      // A backslash before a line break joins lines, as in a shell.
      index += 2;
      continue;
    }
    inWord = true;
    if (char === "'") {
      const end = command.indexOf("'", index + 1);
      if (end === -1) {
        throw new SyntaxError(`Unclosed single quote at character ${index + 1} of the command.`);
      }
      current += command.slice(index + 1, end);
      index = end + 1;
    } else if (char === '"') {
      index++;
      for (;;) {
        if (index >= command.length) {
          throw new SyntaxError('Unclosed double quote in the command.');
        }
        const inner = command[index]!;
        if (inner === '"') {
          index++;
          break;
        }
        const next = command[index + 1];
        if (inner === '\\' && next !== undefined && '"\\$`'.includes(next)) {
          current += next;
          index += 2;
        } else {
          current += inner;
          index++;
        }
      }
    } else if (char === '\\') {
      const next = command[index + 1];
      if (next === undefined) throw new SyntaxError('The command ends with a lone backslash.');
      current += next;
      index += 2;
    } else {
      current += char;
      index++;
    }
  }
  if (inWord) args.push(current);
  return args;
}
