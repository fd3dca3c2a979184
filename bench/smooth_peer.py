#!/usr/bin/env python3
"""torch.optim.LBFGS on the smooth problems of bench/smooth_problems.h (the same functions,
the same starts, float64, one thread), for lbfgs_peer_test and smooth_bench.

Prints one line per problem: NAME EVALUATIONS LOSS SECONDS, where EVALUATIONS counts the
closure's calls until torch.optim.LBFGS stops by itself (tolerance_grad 1e-7 and
tolerance_change 1e-9, its defaults; history_size 10; line_search_fn "strong_wolfe") or, for
a problem given as NAME=TARGET, until the first evaluation whose loss is at most TARGET; LOSS
is the loss where it stopped, and SECONDS the median time of that run over ROUNDS runs.

usage: smooth_peer.py [ROUNDS] [PROBLEM[=TARGET] ...]
"""
import math
import sys
import time

import torch

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)


def rosenbrock_2d():
    def f(x):
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2

    return torch.tensor([-1.5, 2.0]), f


def rosenbrock_100d():
    start = torch.tensor([-1.2, 1.0] * 50)

    def f(x):
        a, b = x[0::2], x[1::2]
        return (100 * (b - a * a) ** 2 + (1 - a) ** 2).sum()

    return start, f


def logistic_data(samples, features):
    i = torch.arange(samples, dtype=torch.float64)[:, None]
    j = torch.arange(features, dtype=torch.float64)[None, :]
    x = torch.sin(1.7 * i + 2.3 * j + 0.013 * i * j)
    w = torch.cos(torch.arange(features, dtype=torch.float64))
    noise = 0.5 * torch.sin(7.1 * torch.arange(samples, dtype=torch.float64))
    y = ((x @ w + noise) > 0).to(torch.float64)
    return x, y


def logistic(samples, features):
    x, y = logistic_data(samples, features)

    def f(w):
        z = x @ w
        return (torch.nn.functional.softplus(z) - y * z).mean()

    return torch.zeros(features), f


def oscillator_data(points):
    t = torch.linspace(0, 10, points)
    clean = 1.5 * torch.exp(-0.3 * t) * torch.cos(2.5 * t + 0.4)
    return t, clean + 0.05 * torch.sin(37.0 * t)


def oscillator():
    t, y = oscillator_data(500)

    def f(p):
        amplitude, damping, frequency, phase = p[0], p[1], p[2], p[3]
        model = amplitude * torch.exp(-damping * t) * torch.cos(frequency * t + phase)
        return ((model - y) ** 2).mean()

    return torch.tensor([1.0, 0.2, 2.4, 0.0]), f


PROBLEMS = {
    "rosenbrock_2d": rosenbrock_2d,
    "rosenbrock_100d": rosenbrock_100d,
    "logistic_500x10": lambda: logistic(500, 10),
    "logistic_5000x50": lambda: logistic(5000, 50),
    "oscillator": oscillator,
}


class Reached(Exception):
    """The loss reached the target: the run ends there."""


def run(problem, target=None):
    start, f = PROBLEMS[problem]()
    x = start.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([x], lr=1, max_iter=100000, max_eval=1000000,
                                  history_size=10, line_search_fn="strong_wolfe")
    calls = [0]

    def closure():
        calls[0] += 1
        optimizer.zero_grad()
        loss = f(x)
        if target is not None and loss.item() <= target:
            raise Reached()
        loss.backward()
        return loss

    began = time.perf_counter()
    try:
        optimizer.step(closure)
    except Reached:
        pass
    seconds = time.perf_counter() - began
    with torch.no_grad():
        loss = f(x).item()
    return calls[0], loss, seconds


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    names = sys.argv[2:] or list(PROBLEMS)
    for given in names:
        name, _, target = given.partition("=")
        results = [run(name, float(target) if target else None) for _ in range(rounds)]
        times = sorted(r[2] for r in results)
        evaluations, loss, _ = results[0]
        print(f"{name} {evaluations} {loss:.17g} {times[len(times) // 2]:.9g}")


if __name__ == "__main__":
    main()
