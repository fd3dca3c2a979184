#!/usr/bin/python3
"""downhill.optim against torch.optim, per step, from Python (the Python call included).

  PYTHONPATH=build/python /usr/bin/python3 bench/python_optim_bench.py [ROUNDS] [OUT.jsonl]

For each algorithm (Adam, RMSProp, ADAGRAD, SGD with momentum 0.9) and size (1e3, 1e5 and
1.6e7 float32 elements in one tensor; and a model of 120 tensors of 1e3 elements), every side
(downhill.optim, torch.optim with foreach off, with foreach on) takes its steps on the same
gradient, one thread, in a rotated order each round: the machine's speed drifts between a fast
and a slow state lasting seconds, so sides are compared round by round. Prints a markdown table
of the median per-round ratio (the best torch.optim side's time / downhill's: above 1, downhill
is faster) and each side's median time per step.
"""

import json
import statistics
import sys
import time

import torch

import downhill.optim

ALGORITHMS = {
    "Adam": (lambda p: downhill.optim.Adam(p, lr=1e-3),
             lambda p, f: torch.optim.Adam(p, lr=1e-3, foreach=f)),
    "RMSProp": (lambda p: downhill.optim.RMSProp(p, lr=1e-3),
                lambda p, f: torch.optim.RMSprop(p, lr=1e-3, foreach=f)),
    "ADAGRAD": (lambda p: downhill.optim.ADAGRAD(p, lr=1e-3),
                lambda p, f: torch.optim.Adagrad(p, lr=1e-3, foreach=f)),
    "SGD+momentum": (lambda p: downhill.optim.SGD(p, lr=1e-3, momentum=0.9),
                     lambda p, f: torch.optim.SGD(p, lr=1e-3, momentum=0.9, foreach=f)),
}
# (label, tensor sizes, steps per timing)
SHAPES = [("1e3", [1000], 2000), ("1e5", [100_000], 300), ("1.6e7", [16_000_000], 3),
          ("120 x 1e3", [1000] * 120, 300)]
SIDES = ["downhill", "torch", "torch_foreach"]


def make_side(algorithm, side, sizes, generator):
    params = [torch.randn(n, generator=generator).requires_grad_() for n in sizes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator) * 1e-3
    ours, theirs = ALGORITHMS[algorithm]
    opt = ours(params) if side == "downhill" else theirs(params, side == "torch_foreach")
    return opt


def seconds_per_step(opt, steps):
    opt.step()  # state made, caches warm
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - start) / steps


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    out = open(sys.argv[2], "w") if len(sys.argv) > 2 else None
    torch.set_num_threads(1)
    rows = []
    for label, sizes, steps in SHAPES:
        algorithms = ["Adam"] if label.startswith("120") else list(ALGORITHMS)
        for algorithm in algorithms:
            generator = torch.Generator().manual_seed(0)
            optimizers = {side: make_side(algorithm, side, sizes, generator) for side in SIDES}
            times = {side: [] for side in SIDES}
            for round_ in range(rounds):
                for k in range(len(SIDES)):
                    side = SIDES[(k + round_) % len(SIDES)]
                    times[side].append(seconds_per_step(optimizers[side], steps))
                if out:
                    out.write(json.dumps({"shape": label, "algorithm": algorithm, "round": round_,
                                          **{s: times[s][-1] for s in SIDES}}) + "\n")
            del optimizers
            ratios = [min(t, f) / d for d, t, f in
                      zip(times["downhill"], times["torch"], times["torch_foreach"])]
            rows.append((label, algorithm, statistics.median(ratios),
                         *(statistics.median(times[s]) * 1e6 for s in SIDES)))
            print(f"bench: {label} {algorithm}: {rows[-1][2]:.2f}x", file=sys.stderr)
    print(f"Per step from Python, one thread, median of {rounds} rounds (float32):\n")
    print("| parameters | algorithm | best torch.optim / downhill.optim | downhill µs | "
          "torch (foreach off) µs | torch (foreach on) µs |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, algorithm, ratio, ours, off, on in rows:
        print(f"| {label} | {algorithm} | {ratio:.2f}× | {ours:.1f} | {off:.1f} | {on:.1f} |")


if __name__ == "__main__":
    main()
