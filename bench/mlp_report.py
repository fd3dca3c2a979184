#!/usr/bin/python3
"""Table of the network benchmark (bench/mlp_run.sh): mlp_report.py RESULTS.jsonl [BLAS.txt].

Ratios are taken round by round (each round ran every side once, back to back) and the
median over rounds is reported, with the smallest and largest per-round ratio as the spread.
"""
import collections
import json
import statistics
import sys

runs = [json.loads(line) for line in open(sys.argv[1])]
by_round = collections.defaultdict(dict)
for run in runs:
    by_round[run["round"]][run["side"]] = run
rounds = [r for r in by_round.values() if len(r) == len({run["side"] for run in runs})]


def ratio(slow, fast):
    values = [r[slow]["cpu_seconds"] / r[fast]["cpu_seconds"] for r in rounds]
    return statistics.median(values), min(values), max(values)


if len(sys.argv) > 2:
    print("```\n" + open(sys.argv[2]).read().strip() + "\n```\n")
print(f"{len(rounds)} rounds; CPU seconds of a whole 30-epoch run (median over rounds)\n")
print("| side | CPU s | accuracy | validation loss | data | forward | gradients | update | loop |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
sides = ["downhill", "apply", "torch_optim", "pytorch", "pytorch_foreach"]
for side in sides:
    these = [r[side] for r in rounds]
    cpu = statistics.median(t["cpu_seconds"] for t in these)
    split = {k: statistics.median(t["split_us_per_step"][k] for t in these
                                  if t["split_us_per_step"][k] is not None)
             if any(t["split_us_per_step"][k] is not None for t in these) else None
             for k in ["data", "forward", "gradients", "update", "loop"]}
    cells = ["—" if v is None else f"{v:.0f} µs" for v in split.values()]
    print(f"| {side} | {cpu:.3f} | {these[0]['accuracy']:.4f} | {these[0]['validation_loss']:.6f} | "
          + " | ".join(cells) + " |")
print("\n| ratio (median of per-round ratios) | value | spread | target |")
print("| --- | --- | --- | --- |")
for slow, fast, target in [("torch_optim", "downhill", "≥ 1.25"), ("pytorch", "downhill", "≥ 1.5"),
                           ("pytorch_foreach", "downhill", "≥ 1.5"),
                           ("downhill", "apply", "≤ 1.02")]:
    median, low, high = ratio(slow, fast)
    print(f"| {slow} / {fast} | {median:.3f} | {low:.3f}–{high:.3f} | {target} |")
