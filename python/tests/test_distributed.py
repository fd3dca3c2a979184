"""Two ranks under torchrun end where one process with both ranks' samples does: downhill's
own data parallelism (distributed=True), and downhill.optim inside DistributedDataParallel."""

import os
import subprocess
import sys

import pytest
import torch

import downhill
import downhill.optim

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from distributed_problem import ddp_model, problem  # noqa: E402


def launch(tmp_path, mode):
    # torchrun --standalone always takes port 29400 for its rendezvous, which other tests'
    # launches running at the same time would share: a free port (localhost:0) instead.
    command = ["/usr/bin/torchrun", "--nnodes=1", "--rdzv_backend=c10d",
               "--rdzv_endpoint=localhost:0", "--nproc_per_node=2", "--redirects", "1",
               "--tee", "1", os.path.join(HERE, "distributed_script.py"), str(tmp_path), mode]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"{mode}_rank{r}.pt") for r in range(2)]
    assert torch.equal(ranks[0], ranks[1])
    return ranks[0]


def test_two_ranks_under_torchrun_match_one_process(tmp_path):
    trained = launch(tmp_path, "downhill")
    # One process, batches of 20: each is the two ranks' batches of 10 together.
    w, loss, x, y = problem()
    data = downhill.Dataset([x, y], batch_size=20, shuffle=False)
    downhill.minimize(loss, data, params={"w": w}, algo="sgd", learning_rate=0.1, momentum=0.5,
                      max_passes=3, validate_every=1)
    assert torch.allclose(trained, w.detach(), rtol=0, atol=1e-15)


def test_downhill_optim_inside_distributed_data_parallel(tmp_path):
    trained = launch(tmp_path, "ddp")
    # One process on all 40 samples: DDP's averaged gradient is the mean over both halves.
    _, _, x, y = problem()
    model = ddp_model()
    opt = downhill.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        (model(x).squeeze(1) - y).square().mean().backward()
        opt.step()
    alone = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.allclose(trained, alone, rtol=0, atol=1e-12)
    assert not torch.allclose(alone, torch.cat([p.detach().reshape(-1)
                                                for p in ddp_model().parameters()]))
