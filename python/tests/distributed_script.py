"""One rank of test_distributed.py, started by torchrun, writing its parameters to
OUT/<mode>_rank<R>.pt:

  distributed_script.py OUT downhill   downhill.minimize with distributed=True
  distributed_script.py OUT ddp        a torch.nn model in DistributedDataParallel, stepped by
                                       downhill.optim.Adam on this rank's half of the data
"""

import sys

import torch

import downhill
import downhill.optim

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from distributed_problem import ddp_model, problem  # noqa: E402

out, mode = sys.argv[1], sys.argv[2]
rank, size = downhill.torchrun_place()
w, loss, x, y = problem()
if mode == "downhill":
    data = downhill.Dataset([x, y], batch_size=10, shuffle=False, name="train")
    downhill.minimize(loss, data, params={"w": w}, algo="sgd", learning_rate=0.1, momentum=0.5,
                      max_passes=3, validate_every=1, distributed=True, distributed_timeout=60)
    result = w.detach()
else:
    torch.distributed.init_process_group("gloo")
    model = ddp_model()
    parallel = torch.nn.parallel.DistributedDataParallel(model)
    opt = downhill.optim.Adam(parallel.parameters(), lr=0.05)
    half = slice(rank * 20, (rank + 1) * 20)
    for _ in range(5):
        opt.zero_grad()
        (parallel(x[half]).squeeze(1) - y[half]).square().mean().backward()
        opt.step()
    result = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.distributed.destroy_process_group()
torch.save(result, f"{out}/{mode}_rank{rank}.pt")
