#!/usr/bin/python3
"""PyTorch-Python peers of downhill's benchmarks, printed as one JSON object.

update: torch.optim SGD (momentum 0.9), Adagrad, RMSprop (centered) and Adam on
one float32 parameter of 1e3, 1e5 and 1.6e7 elements, foreach off and on;
median CPU seconds per step() over repetitions.
rosenbrock: the 2-D Rosenbrock loop of bench/e2e_bench.cpp (10 000 SGD updates,
momentum 0.9, the loss read back every step); median CPU seconds per run.

Run with the system interpreter, /usr/bin/python3 (python3-torch, the same
LibTorch as the C++ benchmarks). CPU time, like the C++ side: on a shared
machine with one LibTorch thread it is what the work costs.
"""
import json
import statistics
import sys
import time

import torch

SIZES = [1_000, 100_000, 16_000_000]
LEARNING_RATE = 1e-3
REPETITIONS = 5
MIN_SECONDS = 0.2  # per repetition, like --benchmark_min_time


def peers():
    return {
        "sgd": lambda p, foreach: torch.optim.SGD(p, lr=LEARNING_RATE, momentum=0.9,
                                                  foreach=foreach),
        "adagrad": lambda p, foreach: torch.optim.Adagrad(p, lr=LEARNING_RATE, foreach=foreach),
        "rmsprop": lambda p, foreach: torch.optim.RMSprop(p, lr=LEARNING_RATE, centered=True,
                                                          foreach=foreach),
        "adam": lambda p, foreach: torch.optim.Adam(p, lr=LEARNING_RATE, foreach=foreach),
    }


def time_steps(step):
    """Median CPU seconds per call of step()."""
    step()  # state allocation outside the timing
    calls = 1
    while True:  # calls per repetition so that one lasts MIN_SECONDS
        start = time.process_time()
        for _ in range(calls):
            step()
        elapsed = time.process_time() - start
        if elapsed >= MIN_SECONDS or calls >= 1 << 20:
            break
        calls = max(calls * 2, int(calls * MIN_SECONDS / max(elapsed, 1e-9)))
    samples = [elapsed / calls]
    for _ in range(REPETITIONS - 1):
        start = time.process_time()
        for _ in range(calls):
            step()
        samples.append((time.process_time() - start) / calls)
    return statistics.median(samples)


def update_peers():
    results = {}
    generator = torch.Generator().manual_seed(0)
    for n in SIZES:
        for name, make in peers().items():
            for foreach in (False, True):
                param = (torch.randn(n, generator=generator) * 1e-2).requires_grad_()
                param.grad = torch.randn(n, generator=generator) * 1e-2
                opt = make([param], foreach)
                results[f"update/{name}/pytorch{'_foreach' if foreach else ''}/{n}"] = \
                    time_steps(opt.step)
                del opt, param
    return results


def rosenbrock(xy):
    x, y = xy[0], xy[1]
    a, b = 1 - x, y - x * x
    return a * a + 100 * b * b


def rosenbrock_run():
    xy = torch.tensor([-1.2, 1.0]).requires_grad_()
    opt = torch.optim.SGD([xy], lr=1e-3, momentum=0.9)
    with torch.no_grad():
        loss_value = rosenbrock(xy).item()  # downhill's first validation
    for _ in range(10_000):
        opt.zero_grad()
        loss = rosenbrock(xy)
        loss.backward()
        loss_value = loss.item()
        opt.step()
    return loss_value


def main():
    results = {
        "context": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                    "python": sys.version.split()[0]},
        "seconds": update_peers(),
    }
    samples, final_loss = [], None
    for _ in range(REPETITIONS):
        start = time.process_time()
        final_loss = rosenbrock_run()
        samples.append(time.process_time() - start)
    results["seconds"]["e2e/rosenbrock/pytorch"] = statistics.median(samples)
    results["rosenbrock_final_loss"] = final_loss
    json.dump(results, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
