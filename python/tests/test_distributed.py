"""Two ranks under torchrun (distributed=True) end where one process with both ranks' samples
does."""

import os
import subprocess
import sys

import torch

import downhill

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from distributed_problem import problem  # noqa: E402


def test_two_ranks_under_torchrun_match_one_process(tmp_path):
    command = ["/usr/bin/torchrun", "--standalone", "--nproc_per_node=2", "--redirects", "1",
               "--tee", "1", os.path.join(HERE, "distributed_script.py"), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.equal(ranks[0], ranks[1])

    # One process, batches of 20: each is the two ranks' batches of 10 together.
    w, loss, x, y = problem()
    data = downhill.Dataset([x, y], batch_size=20, shuffle=False)
    downhill.minimize(loss, data, params={"w": w}, algo="sgd", learning_rate=0.1, momentum=0.5,
                      max_passes=3, validate_every=1)
    assert torch.allclose(ranks[0], w.detach(), rtol=0, atol=1e-15)
