"""The seed's raw updates: ask downhill for the update and do everything else yourself. Here
the gradients come from autograd in your own code, and apply() updates the tensors in place.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/raw_updates.py
"""

import torch

import downhill

torch.manual_seed(1)
A, B, K = 20, 5, 3
u = torch.randn(A, K).requires_grad_()
v = torch.randn(K, B).requires_grad_()
y = torch.randn(A, K) @ torch.randn(K, B) + torch.randn(A, B)


def loss(z):
    return (z - u @ v).square().mean() + u.abs().mean() + (v * v).mean()


opt = downhill.build("rmsprop", params=[u, v], max_gradient_norm=1, learning_rate=0.1)
first = loss(y).item()
for _ in range(100):
    value = loss(y)
    grads = torch.autograd.grad(value, [u, v])
    opt.apply(grads)  # Apply the update to u and v.
print(first, "->", loss(y).item())
assert loss(y).item() < 0.75 * first, "the loss should have fallen"
