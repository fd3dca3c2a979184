"""The problem of test_distributed.py: least squares on 40 samples, float64."""

import torch


def problem():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(40, 4, dtype=torch.float64, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)

    def loss(features, targets):
        return (features @ w - targets).square().mean()

    return w, loss, x, y


def ddp_model():
    """A linear model of the same data, its weights from a fixed seed."""
    torch.manual_seed(11)
    return torch.nn.Linear(4, 1).double()
