"""The seed's loop you drive: downhill.build(...).iterate(...) yields the training and
validation monitors after each pass; break out of it whenever you like.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/iterate.py
"""

import torch

import downhill

torch.manual_seed(1)
A, B, K = 20, 5, 3
u = torch.randn(A, K).requires_grad_()
v = torch.randn(K, B).requires_grad_()
y = torch.randn(A, K) @ torch.randn(K, B) + torch.randn(A, B)


def loss(z):
    err = (z - u @ v).square()
    return err.mean() + u.abs().mean() + (v * v).mean(), {"err": err.mean()}


opt = downhill.build(algo="rmsprop", loss=loss, params={"u": u, "v": v},
                     monitor_gradients=True)
for metrics, _ in opt.iterate(train=[[y]], patience=0, batch_size=A, max_gradient_norm=1,
                              learning_rate=0.1, max_passes=300, validate_every=10):
    if opt.last_run.passes % 50 == 0:
        print(metrics)
    if metrics["err"] < 0.5:
        break

print("stopped:", opt.last_run.stop, "after", opt.last_run.passes, "passes")
assert metrics["err"] < 1.0, "the error should have fallen"
