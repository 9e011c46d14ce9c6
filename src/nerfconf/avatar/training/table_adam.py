"""Adam for the blended hash tables, fed the gradient of their blend.

Training blends the K+1 tables once per iteration into the frame's table ``H``
and back-propagates only to ``H`` (L, T, F). Table k's gradient is then
``w_k * dL/dH`` (plus the sparsity term), so it never needs to exist as a
(K+1, L, T, F) array: on CPU one numba pass (``blend_adam_step``) forms it per
entry and applies torch.optim.Adam's update to tables and moments in place.
Other devices run the same maths as torch operations (also the reference the
kernel is tested against).
"""

from __future__ import annotations

import torch

from nerfconf.avatar.fields import hashgrid_kernels as K


class TableAdam:
    """Adam state (moments and step count) for a (K+1, L, T, F) table parameter.

    ``sparsity`` is the L1 weight on the expression tables (k >= 1) as it enters the
    loss, ``sparsity * mean |T_k|``; the gradient added per entry is its derivative.
    """

    def __init__(self, tables: torch.Tensor, betas: tuple[float, float] = (0.9, 0.99), eps: float = 1e-15,
                 sparsity: float = 0.0) -> None:
        self.tables = tables
        self.betas = betas
        self.eps = eps
        n_expression_entries = tables[1:].numel()
        self.l1 = sparsity / n_expression_entries if n_expression_entries else 0.0
        self.exp_avg = torch.zeros_like(tables)
        self.exp_avg_sq = torch.zeros_like(tables)
        self.steps = 0

    @torch.no_grad()
    def step(self, grad_blended: torch.Tensor, weights: torch.Tensor, lr: float) -> None:
        """One update from ``grad_blended`` (L, T, F), the gradient of the blend with ``weights`` (K+1,)."""
        self.steps += 1
        t = self.tables.data
        if t.device.type == "cpu" and t.dtype == torch.float32:
            K.blend_adam_step(t.numpy(), self.exp_avg.numpy(), self.exp_avg_sq.numpy(),
                              grad_blended.detach().to(torch.float32).contiguous().numpy(),
                              weights.detach().to(torch.float32).contiguous().numpy(),
                              lr, self.betas[0], self.betas[1], self.eps, float(self.steps), self.l1)
            return
        reference_blend_adam_step(t, self.exp_avg, self.exp_avg_sq, grad_blended, weights, lr, self.betas,
                                  self.eps, self.steps, self.l1)


def reference_blend_adam_step(tables, exp_avg, exp_avg_sq, grad_blended, weights, lr, betas, eps, step, l1):
    """``blend_adam_step`` with torch operations, in place (any device)."""
    grad = weights.to(tables.dtype)[:, None, None, None] * grad_blended[None]
    if l1:
        grad[1:] += l1 * torch.sign(tables[1:])
    beta1, beta2 = betas
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias2_sqrt = (1 - beta2**step) ** 0.5
    denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(eps)
    tables.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
