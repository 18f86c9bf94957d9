"""Turn trial's closing lines into 'N passed, N failed, N skipped' and an exit code.

trial ends with 'PASSED (successes=5)' or 'FAILED (failures=1, errors=2, successes=3)'.
Failures, errors and unexpected successes count as failed. Exit 1 on any failure, on a
run with no test, or when trial itself exited non-zero.
"""

import re
import sys


def summarize(text):
    counts = {}
    verdict = None
    for line in text.splitlines():
        m = re.match(r'^(PASSED|FAILED) \((.*)\)\s*$', line.strip())
        if m:
            verdict = m.group(1)
            counts = {k: int(v) for k, v in re.findall(r'(\w+)=(\d+)', m.group(2))}
    passed = counts.get('successes', 0)
    failed = counts.get('failures', 0) + counts.get('errors', 0) + counts.get(
        'unexpectedSuccesses', 0)
    skipped = counts.get('skips', 0) + counts.get('expectedFailures', 0)
    return verdict, passed, failed, skipped


def main():
    with open(sys.argv[1], encoding='utf-8', errors='replace') as f:
        verdict, passed, failed, skipped = summarize(f.read())
    trial_status = int(sys.argv[2])
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    if verdict is None or trial_status != 0 or failed or passed == 0:
        sys.exit(1)


if __name__ == '__main__':
    main()
