#!/usr/bin/python3
"""The end-to-end network benchmark's data and its PyTorch sides.

  mlp_peer.py prepare DIR           writes the shared problem into DIR
  mlp_peer.py run DIR SIDE          trains one side, prints one JSON line
                                    (SIDE: pytorch, pytorch_foreach, or, with the Python
                                    package on PYTHONPATH, downhill_optim: the same loop with
                                    downhill.optim.Adam; downhill_minimize: the seed-style
                                    downhill.minimize)

The problem: an MLP 64-256-256-10 (ReLU) classifying the 8x8 digits that
python3-sklearn ships (1437 training, 360 validation images), Adam (lr 1e-3,
betas 0.9/0.999, eps 1e-8), batches of 32, 30 epochs. Every side starts from
the same weights and sees the same batches: `prepare` writes the data, the
initial weights (layers built one statement each, so in a fixed order) and the
30 per-epoch sample permutations, drawn by torch.randperm from a generator
seeded with ORDER_SEED, which downhill's Dataset(shuffle_samples) reproduces
from the same seed. Files are raw little-endian arrays; meta.json gives shapes.

Run with the system interpreter, /usr/bin/python3 (python3-torch: the same
LibTorch as the C++ sides), one thread (torch.set_num_threads(1)).
"""
import json
import sys
import time

import torch

EPOCHS = 30
BATCH = 32
LEARNING_RATE = 1e-3
SPLIT_SEED = 0
WEIGHT_SEED = 0
ORDER_SEED = 1
LAYERS = ["l1", "l2", "l3"]


def prepare(folder):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target, dtype=torch.int64)
    split = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    train, valid = split[:1437], split[1437:]
    arrays = {"x_train": x[train], "y_train": y[train], "x_valid": x[valid], "y_valid": y[valid]}
    torch.manual_seed(WEIGHT_SEED)
    l1 = torch.nn.Linear(64, 256)
    l2 = torch.nn.Linear(256, 256)
    l3 = torch.nn.Linear(256, 10)
    for name, layer in zip(LAYERS, (l1, l2, l3)):
        arrays[name + ".weight"] = layer.weight.detach()
        arrays[name + ".bias"] = layer.bias.detach()
    orders = torch.Generator().manual_seed(ORDER_SEED)
    arrays["orders"] = torch.stack([torch.randperm(1437, generator=orders) for _ in range(EPOCHS)])
    meta = {"epochs": EPOCHS, "batch": BATCH, "learning_rate": LEARNING_RATE,
            "order_seed": ORDER_SEED, "arrays": {}}
    for name, array in arrays.items():
        array = array.contiguous()
        array.numpy().tofile(f"{folder}/{name}.bin")
        meta["arrays"][name] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    with open(f"{folder}/meta.json", "w") as out:
        json.dump(meta, out, indent=1)


def load(folder):
    import numpy

    with open(f"{folder}/meta.json") as f:
        meta = json.load(f)
    arrays = {}
    for name, info in meta["arrays"].items():
        dtype = numpy.float32 if info["dtype"] == "torch.float32" else numpy.int64
        arrays[name] = torch.from_numpy(numpy.fromfile(f"{folder}/{name}.bin", dtype=dtype)
                                        .reshape(info["shape"]))
    return meta, arrays


def run(folder, side):
    torch.set_num_threads(1)
    meta, a = load(folder)
    l1 = torch.nn.Linear(64, 256)
    l2 = torch.nn.Linear(256, 256)
    l3 = torch.nn.Linear(256, 10)
    with torch.no_grad():
        for name, layer in zip(LAYERS, (l1, l2, l3)):
            layer.weight.copy_(a[name + ".weight"])
            layer.bias.copy_(a[name + ".bias"])
    params = [p for layer in (l1, l2, l3) for p in layer.parameters()]
    if side == "downhill_minimize":
        return run_minimize(meta, a, (l1, l2, l3))
    if side == "downhill_optim":
        import downhill.optim

        opt = downhill.optim.Adam(params, lr=meta["learning_rate"], betas=(0.9, 0.999), eps=1e-8)
    else:
        opt = torch.optim.Adam(params, lr=meta["learning_rate"], betas=(0.9, 0.999), eps=1e-8,
                               foreach=(side == "pytorch_foreach"))

    def forward(x, y):
        return torch.nn.functional.cross_entropy(l3(torch.relu(l2(torch.relu(l1(x))))), y)

    def validate():  # what downhill's loop does before the first and after the last epoch
        with torch.no_grad():
            return forward(a["x_valid"], a["y_valid"]).item()

    x, y, orders, batch = a["x_train"], a["y_train"], a["orders"], meta["batch"]
    split = {"data": 0.0, "forward": 0.0, "gradients": 0.0, "update": 0.0}
    clock = time.perf_counter
    cpu_start, wall_start = time.process_time(), clock()
    validate()
    steps = 0
    for epoch in range(meta["epochs"]):
        order = orders[epoch]
        total = 0.0
        for start in range(0, len(order), batch):
            t0 = clock()
            index = order[start:start + batch]
            xb, yb = x.index_select(0, index), y.index_select(0, index)
            t1 = clock()
            loss = forward(xb, yb)
            t2 = clock()
            opt.zero_grad()
            loss.backward()
            t3 = clock()
            opt.step()
            t4 = clock()
            total += loss.item() * len(index)
            split["data"] += t1 - t0
            split["forward"] += t2 - t1
            split["gradients"] += t3 - t2
            split["update"] += t4 - t3
            steps += 1
    validation_loss = validate()
    wall, cpu = clock() - wall_start, time.process_time() - cpu_start
    with torch.no_grad():
        logits = l3(torch.relu(l2(torch.relu(l1(a["x_valid"])))))
        accuracy = (logits.argmax(1) == a["y_valid"]).float().mean().item()
    split["loop"] = wall - sum(split.values())
    print(json.dumps({"side": side, "cpu_seconds": cpu, "wall_seconds": wall, "steps": steps,
                      "validation_loss": validation_loss, "accuracy": accuracy,
                      "last_epoch_loss": total / len(order),
                      "split_us_per_step": {k: v / steps * 1e6 for k, v in split.items()}}))


def run_minimize(meta, a, layers):
    """The seed's one call: downhill.minimize over a Dataset that shuffles samples from the
    order seed (the orders the other sides read), validating before and after the 30 epochs."""
    import downhill

    l1, l2, l3 = layers

    def forward(x, y):
        return torch.nn.functional.cross_entropy(l3(torch.relu(l2(torch.relu(l1(x))))), y)

    params = {f"{name}.{kind}": getattr(layer, kind)
              for name, layer in zip(LAYERS, layers) for kind in ("weight", "bias")}
    train = downhill.Dataset([a["x_train"], a["y_train"]], batch_size=meta["batch"],
                             shuffle_samples=True, rng=meta["order_seed"], name="train")
    valid = downhill.Dataset([a["x_valid"], a["y_valid"]], batch_size=0, name="valid")
    clock = time.perf_counter
    cpu_start, wall_start = time.process_time(), clock()
    result = downhill.minimize(forward, train, valid, params=params, algo="adam",
                               learning_rate=meta["learning_rate"], beta1=0.9, beta2=0.999,
                               rms_regularizer=1e-8, max_passes=meta["epochs"],
                               validate_every=meta["epochs"], patience=1000)
    wall, cpu = clock() - wall_start, time.process_time() - cpu_start
    with torch.no_grad():
        validation_loss = forward(a["x_valid"], a["y_valid"]).item()
        logits = l3(torch.relu(l2(torch.relu(l1(a["x_valid"])))))
        accuracy = (logits.argmax(1) == a["y_valid"]).float().mean().item()
    steps = meta["epochs"] * train.slice_count
    print(json.dumps({"side": "downhill_minimize", "cpu_seconds": cpu, "wall_seconds": wall,
                      "steps": steps, "validation_loss": validation_loss, "accuracy": accuracy,
                      "last_epoch_loss": result[0]["loss"], "split_us_per_step": {}}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "prepare":
        prepare(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
