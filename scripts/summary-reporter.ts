/**
 * Prints one plain closing line, `vitest: N passed, N failed, N skipped`, after the default
 * reporter's summary, so CI logs end with a line any tool can read.
 *
 * Failures that are not a test's own count too, once each, so a broken run can never read as
 * a clean one: a test file that fails to import or whose hooks fail (with no failed test of
 * its own to show it), and every unhandled error.
 */
import type { Reporter, SerializedError, TestModule, TestRunEndReason } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<SerializedError>,
    _reason: TestRunEndReason,
  ): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    for (const module of testModules) {
      let failedHere = 0;
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failedHere++;
        // 'skipped', and 'pending' for tests an interrupted run never reached.
        else skipped++;
      }
      const moduleFailed = module.state() === 'failed' || module.errors().length > 0;
      failed += failedHere > 0 ? failedHere : moduleFailed ? 1 : 0;
    }
    process.stdout.write(`\nvitest: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
