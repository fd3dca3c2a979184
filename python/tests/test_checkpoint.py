"""Checkpoints written from Python continue in C++, and back (the file is the library's)."""

import os
import subprocess

import torch

import downhill

PEER = os.environ.get("DOWNHILL_CHECKPOINT_PEER")


def problem():
    """The problem of tests/python_checkpoint_peer.cpp, written alike. (v appears in two terms,
    each with one use of v: a gradient summed from three or more parts, as v * v would give,
    can differ in its last bit between PyTorch's Python and C++ autograd engines, which add
    the parts in another order.)"""
    u = torch.zeros(20, 3, dtype=torch.float64, requires_grad=True)
    v = torch.zeros(3, 5, dtype=torch.float64, requires_grad=True)
    y = torch.sin(torch.arange(100, dtype=torch.float64)).reshape(20, 5)

    def loss(z):
        return (z - u.mm(v)).square().mean() + v.square().mean() / 10

    opt = downhill.build("adam", loss, {"u": u, "v": v}, learning_rate=0.01)
    return opt, u, v, y


def test_a_checkpoint_from_python_continues_in_cpp_and_back(tmp_path):
    assert PEER and os.path.exists(PEER), "DOWNHILL_CHECKPOINT_PEER must name the C++ peer"
    opt, u, v, y = problem()
    with torch.no_grad():
        u.copy_(torch.cos(torch.arange(60, dtype=torch.float64)).reshape(20, 3))
        v.copy_(torch.cos(torch.arange(15, dtype=torch.float64)).reshape(3, 5))
    for _ in range(5):
        opt.step(y)
    opt.save_checkpoint(tmp_path / "from_python.ckpt")
    for _ in range(5):
        opt.step(y)
    python_u, python_v = u.detach().clone(), v.detach().clone()

    subprocess.run([PEER, str(tmp_path / "from_python.ckpt"), "5",
                    str(tmp_path / "from_cpp.ckpt")], check=True, timeout=120)
    cpp, cu, cv, _ = problem()
    cpp.load_checkpoint(tmp_path / "from_cpp.ckpt")
    assert torch.equal(cu.detach(), python_u) and torch.equal(cv.detach(), python_v)
    assert cpp.update_count == 10

    # And back: the C++ checkpoint continues in Python as Python's own run does.
    for _ in range(3):
        opt.step(y)
        cpp.step(y)
    assert torch.equal(cu.detach(), u.detach()) and torch.equal(cv.detach(), v.detach())
