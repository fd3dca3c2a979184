"""A torch.nn model trained in an ordinary PyTorch loop, with downhill.optim.AdamW in place of
torch.optim.AdamW (and a scheduler, as usual).

    PYTHONPATH=build/python /usr/bin/python3 examples/python/torch_nn_adamw.py
"""

import torch

import downhill.optim

torch.manual_seed(0)
features = torch.randn(512, 8)
targets = (features[:, :1] * 2 - features[:, 1:2] + 0.1 * torch.randn(512, 1))
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(features, targets),
                                     batch_size=64, shuffle=True)

model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
opt = downhill.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)

for epoch in range(20):
    for x, y in loader:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    scheduler.step()
    if epoch % 5 == 4:
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}, lr {scheduler.get_last_lr()[0]:.5f}")

with torch.no_grad():
    final = torch.nn.functional.mse_loss(model(features), targets).item()
print("mean squared error", final)
assert final < 0.05, "the model should have fit the data"
