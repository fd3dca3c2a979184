"""Data-parallel training from Python: run under torchrun, each process trains on its share of
the batches and the gradients are averaged, as in C++ (docs/guide.md, "Scaling out").

    PYTHONPATH=build/python /usr/bin/torchrun --standalone --nproc_per_node=2 \
        --redirects 1 --tee 1 examples/python/data_parallel.py
"""

import torch

import downhill

generator = torch.Generator().manual_seed(0)
x = torch.randn(400, 6, generator=generator)
y = x @ torch.arange(1.0, 7.0) + 0.01 * torch.randn(400, generator=generator)
w = torch.zeros(6, requires_grad=True)

train, valid = downhill.minimize(lambda a, b: (a @ w - b).square().mean(), [x, y],
                                 params={"w": w}, algo="adam", learning_rate=0.05,
                                 batch_size=20, max_passes=40, distributed=True)
rank, world_size = downhill.torchrun_place()
print(f"rank {rank} of {world_size}: loss {valid['loss']:.5f}, w = {w.detach().tolist()}")
assert valid["loss"] < 1e-2, "the fit should be close"
