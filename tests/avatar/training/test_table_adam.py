"""The fused table optimizer against autograd through the blend and torch's Adam."""

import numpy as np
import pytest
import torch

from nerfconf.avatar.fields.hashgrid import blend_tables
from nerfconf.avatar.training.table_adam import TableAdam, reference_blend_adam_step


def _problem(seed=0, shape=(5, 3, 64, 2)):
    g = torch.Generator().manual_seed(seed)
    tables = torch.randn(shape, generator=g) * 1e-2
    tables[2, 1, :7] = 0.0  # exact zeros: sign(0) = 0, as torch has it
    weights = torch.cat([torch.ones(1), torch.rand(shape[0] - 1, generator=g) * 2 - 1])
    weights[3] = 0.0  # a table with weight 0 still has its moments decay
    grads = [torch.randn(shape[1:], generator=g) for _ in range(4)]
    for gb in grads:
        gb[0, :5] = 0.0  # untouched rows
    return tables, weights, grads


def _torch_adam(tables, weights, grads, lrs, sparsity):
    p = torch.nn.Parameter(tables.clone())
    opt = torch.optim.Adam([p], lr=lrs[0], betas=(0.9, 0.99), eps=1e-15, foreach=False)
    for gb, lr in zip(grads, lrs):
        opt.param_groups[0]["lr"] = lr
        opt.zero_grad()
        loss = (blend_tables(p, weights) * gb).sum() + sparsity * p[1:].abs().mean()
        loss.backward()
        opt.step()
    return p.detach(), opt.state[p]


@pytest.mark.parametrize("sparsity", [0.0, 1e-3])
def test_fused_step_matches_autograd_and_torch_adam(sparsity):
    tables, weights, grads = _problem()
    lrs = [1e-3, 1e-3, 3e-4, 1e-4]
    want, state = _torch_adam(tables, weights, grads, lrs, sparsity)
    p = tables.clone()
    opt = TableAdam(p, sparsity=sparsity)
    for gb, lr in zip(grads, lrs):
        opt.step(gb, weights, lr)
    assert opt.steps == 4
    # torch forms the moments with lerp, the kernel with multiply-adds: rounding differs
    torch.testing.assert_close(opt.exp_avg, state["exp_avg"], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(opt.exp_avg_sq, state["exp_avg_sq"], rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(p, want, rtol=1e-5, atol=1e-7)
    assert (p - tables).abs().max() > 1e-4  # it did move
    # a table with weight 0 moves only by the sparsity term
    assert torch.equal(p[3], tables[3]) == (sparsity == 0.0)


def test_kernel_matches_torch_reference_on_random_state():
    tables, weights, grads = _problem(1, (4, 2, 100, 3))
    a, b = tables.clone(), tables.clone()
    ma, va = torch.rand_like(a) * 1e-3, torch.rand_like(a) * 1e-6
    mb, vb = ma.clone(), va.clone()
    ta = TableAdam(a, sparsity=0.5)
    ta.exp_avg, ta.exp_avg_sq, ta.steps = ma, va, 6
    ta.step(grads[0], weights, 2e-3)
    reference_blend_adam_step(b, mb, vb, grads[0], weights, 2e-3, (0.9, 0.99), 1e-15, 7, ta.l1)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(ma, mb, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(va, vb, rtol=1e-5, atol=1e-14)
    assert np.isfinite(a.numpy()).all()
