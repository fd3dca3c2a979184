#!/usr/bin/python3
"""multi_machine_test.sh's check: the two nodes' result files (tests/distributed_child's
parameters after each pass) are identical, and match the one process's to 1e-15 relative to
the largest magnitude.

  multi_machine_compare.py NODE_A NODE_B ONE_PROCESS LABEL
"""

import sys


def numbers(path):
    values = []
    with open(path) as text:
        for word in text.read().split():
            try:
                values.append(float(word))
            except ValueError:
                pass
    return values


node_a, node_b, one, label = sys.argv[1:5]
with open(node_a) as first, open(node_b) as second:
    if first.read() != second.read():
        sys.exit(f"FAIL {label}: the two nodes' parameters differ")
a, expected = numbers(node_a), numbers(one)
if len(a) != len(expected) or len(a) < 20:
    sys.exit(f"FAIL {label}: {len(a)} numbers against the one process's {len(expected)}")
scale = max(abs(v) for v in expected)
worst = max(abs(x - y) for x, y in zip(a, expected))
if worst > 1e-15 * scale:
    sys.exit(f"FAIL {label}: differs from one process by {worst:.3g} (scale {scale:.3g})")
print(f"{label}: both nodes identical; largest difference from one process {worst:.3g} "
      f"(scale {scale:.3g})")
