"""The seed's quick start, on PyTorch tensors: a sparse, low-rank approximation of some data
with one call of downhill.minimize.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/matrix_factorization.py
"""

import logging

import torch

import downhill

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
torch.manual_seed(1)
FLOAT = torch.float32


def rand(a, b):
    return torch.randn(a, b, dtype=FLOAT)


A, B, K = 20, 5, 3

# Set up a matrix factorization problem to optimize.
u = rand(A, K).requires_grad_()
v = rand(K, B).requires_grad_()


def loss(z):
    err = (z - u @ v).square()
    return err.mean() + u.abs().mean() + (v * v).mean()


# Minimize the regularized loss with respect to a data matrix.
y = rand(A, K) @ rand(K, B) + rand(A, B)

# Monitor during optimization.
monitors = (("err", lambda z: (z - u @ v).square().mean()),
            ("|u|<0.1", lambda: (u.abs() < 0.1).float().mean()),
            ("|v|<0.1", lambda: (v.abs() < 0.1).float().mean()))

start = loss(y).item()
train, valid = downhill.minimize(
    loss=loss,
    train=[y],
    patience=0,
    batch_size=A,  # Process y as a single batch.
    max_gradient_norm=1,  # Prevent gradient explosion!
    learning_rate=0.1,
    monitors=monitors,
    monitor_gradients=True)

# Print out the optimized coefficients u and basis v.
print("u =", u.detach())
print("v =", v.detach())
print("loss", start, "->", loss(y).item(), "| valid", valid)
assert loss(y).item() < 0.75 * start, "the loss should have fallen"
