#!/usr/bin/python3
"""The data-parallel step's PyTorch side: one process, and two ranks of
DistributedDataParallel over Gloo. bench/distributed_run.sh runs it beside
bench/distributed_bench.cpp (the same model, sizes, batch and algorithm; its
header says what a step is); alone:

  distributed_peer.py [--sizes=N,N] [--steps=S,S] [--warmup=W,W] [--batch=B]

One process when RANK/WORLD_SIZE are not set; with them (and MASTER_ADDR,
MASTER_PORT, as torchrun sets them) one rank: init_process_group("gloo") from
the environment, DDP with its defaults (bucket_cap_mb=25). Prints one JSON line
per size.

The model: d -> 5d -> d (ReLU), d = round(sqrt(n/10)), float32, mean squared
error, a fixed batch of B random samples per rank; torch.optim.SGD, lr 1e-3,
momentum 0.9. A step: zero_grad(set_to_none=True), forward, backward (timed
together: DDP all-reduces its buckets from hooks during the backward and waits
for them at its end, so its all-reduce lies inside this phase), then
optimizer.step() (timed). Two ranks alternate three kinds of step:
  sync   a DDP step;
  local  the same inside ddp.no_sync(): no all-reduce;
  raw    one dist.all_reduce of n float32 in a single tensor.
Wall time (time.perf_counter), medians over the timed steps of each kind.
Run with /usr/bin/python3 (python3-torch: the same LibTorch as the C++ side).
"""
import json
import math
import os
import sys
import time

import torch

LEARNING_RATE = 1e-3
MOMENTUM = 0.9


def median(values):
    values = sorted(values)
    if not values:
        return float("nan")
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def make_model(n, batch, rank):
    d = round(math.sqrt(n / 10))
    model = torch.nn.Sequential(torch.nn.Linear(d, 5 * d), torch.nn.ReLU(),
                                torch.nn.Linear(5 * d, d))
    # The same values as the C++ side's (the same generator, seed and order of draws).
    torch.manual_seed(0)
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(5 * d, d) / math.sqrt(d))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.randn(d, 5 * d) / math.sqrt(5 * d))
        model[2].bias.zero_()
    torch.manual_seed(1000 + rank)
    x = torch.randn(batch, d)
    y = torch.randn(batch, d)
    return d, model, x, y


def bucket_sizes(ddp):
    """DDP's buckets after its rebuild, in bytes, when its logging data says."""
    try:
        data = ddp._get_ddp_logging_data()
    except Exception:  # a private API: absent in other versions
        return None
    sizes = data.get("rebuilt_bucket_sizes") or data.get("bucket_sizes")
    if isinstance(sizes, str):
        sizes = [int(s) for s in sizes.split(",") if s.strip()]
    return sizes


def run_size(n, steps, warmup, batch, rank, world):
    d, model, x, y = make_model(n, batch, rank)
    params = sum(p.numel() for p in model.parameters())
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
        flat = torch.randn(params)
    else:
        net = model
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    loss_fn = torch.nn.MSELoss()
    kinds = ["sync", "local", "raw"] if world > 1 else ["sync"]
    times = {kind: {"grad": [], "update": [], "total": []} for kind in kinds}

    def forward_backward():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()

    clock = time.perf_counter
    for step in range(warmup + steps):
        kind = kinds[step % len(kinds)]
        grad_seconds = 0.0
        if kind == "raw":
            begin = clock()
            torch.distributed.all_reduce(flat)
            update_seconds = clock() - begin
        else:
            begin = clock()
            if kind == "local":
                with net.no_sync():
                    forward_backward()
            else:
                forward_backward()
            middle = clock()
            opt.step()
            end = clock()
            grad_seconds, update_seconds = middle - begin, end - middle
        if step < warmup:
            continue
        times[kind]["grad"].append(grad_seconds)
        times[kind]["update"].append(update_seconds)
        times[kind]["total"].append(grad_seconds + update_seconds)
    line = {"side": "ddp_2rank" if world > 1 else "torch_1proc", "rank": rank, "world": world,
            "n": n, "params": params, "d": d, "batch": batch,
            "threads": torch.get_num_threads()}
    for kind in kinds:
        line[kind] = {"steps": len(times[kind]["grad"]),
                      **{phase: median(v) for phase, v in times[kind].items()}}
    if world > 1:
        line["bucket_bytes"] = bucket_sizes(net)
    return line


def main():
    settings = {"sizes": [100000, 10000000], "steps": [300, 15], "warmup": [30, 3], "batch": [32]}
    for argument in sys.argv[1:]:
        key, _, value = argument.partition("=")
        if key.lstrip("-") not in settings:
            sys.exit(f"unknown argument {argument}; usage: distributed_peer.py "
                     "[--sizes=N,N] [--steps=S,S] [--warmup=W,W] [--batch=B]")
        settings[key.lstrip("-")] = [int(float(v)) for v in value.split(",")]
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        torch.distributed.init_process_group("gloo")
    for n, steps, warmup in zip(settings["sizes"], settings["steps"], settings["warmup"]):
        print(json.dumps(run_size(n, steps, warmup, settings["batch"][0], rank, world)),
              flush=True)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
