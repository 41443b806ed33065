#!/usr/bin/env python3
"""Count a test runner's results for scripts/check.sh: prints
"PASSED FAILED SKIPPED".

  count-results.py junit FILE RC   meson test's JUnit XML (one testcase
                                   per TAP subtest, or per test)
  count-results.py tap FILE RC     a TAP stream

RC is the runner's exit status: a runner that failed without any failed
result in its output (it crashed, timed out, bailed out, or its TAP plan
does not match) counts one failure, so a failure is never lost.
"""
import re
import sys
import xml.etree.ElementTree as ET


def junit(path):
    passed = failed = skipped = 0
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f'count-results: {path}: {e}', file=sys.stderr)
        return 0, 1, 0
    for case in root.iter('testcase'):
        if case.find('failure') is not None or case.find('error') is not None:
            failed += 1
        elif case.find('skipped') is not None:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


TAP_LINE = re.compile(r'^(not ok|ok)\b\s*(\d+)?[^#]*(#\s*(\w+).*)?$')


def tap(path):
    passed = failed = skipped = 0
    plan = None
    seen = 0
    try:
        lines = open(path, encoding='utf-8', errors='replace').readlines()
    except OSError as e:
        print(f'count-results: {path}: {e}', file=sys.stderr)
        return 0, 1, 0
    for line in lines:
        line = line.rstrip('\n')
        m = re.match(r'^1\.\.(\d+)', line)
        if m:
            plan = int(m.group(1))
            continue
        if line.startswith('Bail out!'):
            failed += 1
            continue
        m = TAP_LINE.match(line)
        if not m:
            continue
        seen += 1
        directive = (m.group(4) or '').upper()
        if m.group(1) == 'not ok' and directive != 'TODO':
            failed += 1
        elif directive == 'SKIP':
            skipped += 1
        else:
            passed += 1
    if plan is not None and plan != seen:
        print(f'count-results: {path}: plan 1..{plan}, {seen} results',
              file=sys.stderr)
        failed += 1
    return passed, failed, skipped


def main():
    kind, path, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
    passed, failed, skipped = {'junit': junit, 'tap': tap}[kind](path)
    if rc != 0 and failed == 0:
        print(f'count-results: {path}: runner exited {rc} with no failed '
              'result: counted as one failure', file=sys.stderr)
        failed = 1
    if rc == 0 and passed + failed + skipped == 0:
        print(f'count-results: {path}: no results', file=sys.stderr)
        failed = 1
    print(passed, failed, skipped)


if __name__ == '__main__':
    main()
