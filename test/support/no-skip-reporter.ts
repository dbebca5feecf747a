// A vitest reporter that turns a skipped or todo test into a failed run: a skip in CI hides a promise
// nobody checked (a missing tool, a mount that failed). Runs filtered with -t are left alone, since
// the filter itself marks the other tests skipped.
import type { Reporter, TestModule, Vitest } from 'vitest/node';

/** Fails the run (exit code 1) when any test was skipped or left as todo, listing each one. */
export default class NoSkipReporter implements Reporter {
  private filtered = false;

  onInit(vitest: Vitest): void {
    this.filtered = vitest.config.testNamePattern !== undefined;
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    if (this.filtered) return;
    const skipped: string[] = [];
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const result = test.result();
        if (result.state === 'skipped' || result.state === 'pending' || test.options.mode === 'todo') {
          const note = result.state === 'skipped' ? result.note : undefined;
          skipped.push(`  ${module.moduleId.replace(`${process.cwd()}/`, '')} > ${test.fullName}${note ? ` (${note})` : ''}`);
        }
      }
    }
    if (skipped.length === 0) return;
    process.stderr.write(`\nno-skip check: ${skipped.length} test(s) skipped or todo; every test must run (install what it needs, see scripts/setup.sh):\n${skipped.join('\n')}\n`);
    process.exitCode = 1;
  }
}
