"""One rank of test_distributed.py, started by torchrun: trains data-parallel and writes its
parameters to OUT/rank<R>.pt."""

import sys

import torch

import downhill

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from distributed_problem import problem  # noqa: E402

out = sys.argv[1]
w, loss, x, y = problem()
data = downhill.Dataset([x, y], batch_size=10, shuffle=False, name="train")
downhill.minimize(loss, data, params={"w": w}, algo="sgd", learning_rate=0.1, momentum=0.5,
                  max_passes=3, validate_every=1, distributed=True, distributed_timeout=60)
rank, size = downhill.torchrun_place()
torch.save(w.detach(), f"{out}/rank{rank}.pt")
