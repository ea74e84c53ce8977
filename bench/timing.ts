/**
 * Timing helpers shared by the micro-benchmarks of the packages (`packages/*\/bench`): a
 * call measured for a fixed time in a few rounds, and a table row with its ratio to a
 * baseline measured in the same run.
 */

/**
 * Runs `work` repeatedly for `seconds` in each of `rounds` rounds (after 50 warm-up calls).
 *
 * @returns microseconds per call, the median of the rounds.
 */
export async function measure(
  work: () => unknown | Promise<unknown>,
  options: { rounds: number; seconds: number },
): Promise<number> {
  for (let warm = 0; warm < 50; warm++) await work();
  const results: number[] = [];
  for (let round = 0; round < options.rounds; round++) {
    let calls = 0;
    const started = performance.now();
    const deadline = started + options.seconds * 1000;
    while (performance.now() < deadline) {
      await work();
      calls++;
    }
    results.push(((performance.now() - started) * 1000) / calls);
  }
  results.sort((a, b) => a - b);
  return results[Math.floor(results.length / 2)]!;
}

/** One line of a table: label, microseconds per call, and the ratio to `baseline` if given. */
export function row(label: string, micros: number, baseline?: number, width = 52): string {
  const ratio = baseline === undefined ? '' : `  x${(micros / baseline).toFixed(1)} the baseline`;
  return `${label.padEnd(width)} ${micros.toFixed(1).padStart(9)} µs${ratio}`;
}
