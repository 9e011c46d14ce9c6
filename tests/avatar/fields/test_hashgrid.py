import itertools

import numpy as np
import pytest
import torch

from nerfconf.avatar.fields import hashgrid_kernels as K
from nerfconf.avatar.fields.hashgrid import (
    BlendedHashGrid,
    HashGridConfig,
    blend_tables,
    encode,
    reference_blend,
    reference_encode,
)

# 4 levels at T = 2^9: resolutions 4 and 6 are dense ((R+1)^3 <= 512), 10 and 16 hashed
TINY = HashGridConfig(
    levels=4, features=2, log2_table=9, min_resolution=4, max_resolution=16, n_tables=4
)


def _points(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g)
    x[:8] = torch.tensor([[a, b, c] for a in (0.0, 1.0) for b in (0.0, 1.0) for c in (0.0, 1.0)])
    x[8:16] = torch.rand(8, 3, generator=g).round()  # more corners and faces: 0 and 1 mixed
    x[16, :] = torch.tensor([0.5, 0.25, 1.0])  # on cell boundaries of every level
    return x


def _grid(config: HashGridConfig = TINY, seed: int = 0) -> BlendedHashGrid:
    grid = BlendedHashGrid(config, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # larger than the init scale so that errors would show
        grid.tables.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(seed + 1))
    return grid


def _expression(k: int, seed: int = 0) -> torch.Tensor:
    e = torch.rand(k, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    e[0] = 0.0  # a zero weight: its table is skipped in the blend but still gets a gradient
    return e


def test_config_resolutions_grow_geometrically_and_levels_are_dense_then_hashed():
    c = HashGridConfig()
    r = c.resolutions
    assert len(r) == 12 and r[0] == 16 and r[-1] == 512
    assert all(b > a for a, b in itertools.pairwise(r))
    assert c.output_dim == 24 and c.n_tables == 47 and c.table_size == 1 << 14
    dense = [(res + 1) ** 3 <= TINY.table_size for res in TINY.resolutions]
    assert TINY.resolutions == (4, 6, 10, 16) and dense == [True, True, False, False]
    assert HashGridConfig(levels=1, min_resolution=8, max_resolution=8).resolutions == (8,)
    with pytest.raises(ValueError):
        HashGridConfig(min_resolution=0)
    with pytest.raises(ValueError):
        HashGridConfig(log2_table=31)


def test_init_is_uniform_in_1e_minus_4():
    t = BlendedHashGrid(TINY).tables
    assert t.shape == (4, 4, 512, 2) and t.dtype == torch.float32
    assert t.abs().max() <= 1e-4 and t.abs().max() > 5e-5


@pytest.mark.parametrize("features", [2, 3])
def test_forward_matches_torch_reference(features):
    grid = _grid(HashGridConfig(**{**TINY.__dict__, "features": features}))
    x = _points(3000)
    table = grid.tables[0].detach()
    with torch.no_grad():
        out = encode(x, table, grid.resolutions)
        ref = reference_encode(x, table, grid.resolutions)
    assert out.shape == (3000, 4 * features) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # at a grid vertex the lookup returns the vertex value of a dense level exactly
    assert torch.allclose(out[0, :features], table[0, 0], atol=1e-6)


def test_non_power_of_two_table_uses_modulo_like_the_reference():
    g = torch.Generator().manual_seed(3)
    table = torch.rand(2, 300, 2, generator=g)
    x = _points(500)
    res = (5, 12)  # 6^3 = 216 <= 300 dense, 13^3 hashed with % 300
    out = np.empty((500, 4), np.float32)
    K.encode_forward(x.numpy(), table.numpy(), np.array(res, np.int32), out)
    torch.testing.assert_close(
        torch.from_numpy(out), reference_encode(x, table, res), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("features", [2, 3])
def test_table_gradient_matches_autograd_through_reference(features):
    grid = _grid(HashGridConfig(**{**TINY.__dict__, "features": features}))
    x = _points(2000)
    table = grid.tables[1].detach().clone().requires_grad_(True)
    upstream = torch.randn(2000, 4 * features, generator=torch.Generator().manual_seed(5))
    (encode(x, table, grid.resolutions) * upstream).sum().backward()
    ours = table.grad.clone()
    table.grad = None
    (reference_encode(x, table, grid.resolutions) * upstream).sum().backward()
    torch.testing.assert_close(ours, table.grad, rtol=1e-5, atol=1e-5)


def test_blend_forward_and_backward_match_einsum():
    grid = _grid()
    w = torch.cat([torch.ones(1), _expression(3)]).requires_grad_(True)
    tables = grid.tables.detach().clone().requires_grad_(True)
    up = torch.randn(4, 512, 2, generator=torch.Generator().manual_seed(7))
    up[:, 100:300] = 0.0  # untouched rows
    ours = blend_tables(tables, w)
    (ours * up).sum().backward()
    g_t, g_w = tables.grad.clone(), w.grad.clone()
    tables.grad = w.grad = None
    ref = reference_blend(tables, w)
    (ref * up).sum().backward()
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_t, tables.grad, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_w, w.grad, rtol=1e-5, atol=1e-5)


def test_blend_backward_accumulates_and_skips_zero_rows_and_weights():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((3, 64, 2)).astype(np.float32)
    g[:, 10:40] = 0.0
    w = np.array([1.0, 0.0, -0.5, 2.0], np.float32)
    acc = rng.standard_normal((4, 3, 64, 2)).astype(np.float32)
    expect = acc + w[:, None, None, None] * g[None]
    K.blend_backward(g, w, acc)
    np.testing.assert_allclose(acc, expect, rtol=1e-6, atol=1e-6)
    assert list(K.touched_rows(g)[:12]) == list(range(10)) + [40, 41]


@pytest.mark.parametrize("touched", [5, 150])  # row-list path (< 1/8 of rows), dense path
def test_weight_gradient_kernel_matches_float64_dot_products(touched):
    rng = np.random.default_rng(touched)
    tables = rng.standard_normal((5, 3, 64, 2)).astype(np.float32)
    g = np.zeros((3, 64, 2), np.float32)
    flat = g.reshape(-1, 2)
    flat[rng.choice(192, touched, replace=False)] = rng.standard_normal((touched, 2))
    expect = np.einsum("kltf,ltf->k", tables.astype(np.float64), g.astype(np.float64))
    np.testing.assert_allclose(K.blend_weight_grad(tables, g), expect, rtol=1e-6, atol=1e-6)


def test_module_forward_and_expression_gradient_match_reference():
    grid = _grid()
    x = _points(1500)
    e = _expression(3).requires_grad_(True)
    up = torch.randn(1500, TINY.output_dim, generator=torch.Generator().manual_seed(9))
    out = grid(x, e)
    (out * up).sum().backward()
    g_tables, g_e = grid.tables.grad.clone(), e.grad.clone()
    grid.tables.grad = e.grad = None
    ref = reference_encode(x, reference_blend(grid.tables, grid.weights(e)), grid.resolutions)
    (ref * up).sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_tables, grid.tables.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_e, e.grad, rtol=1e-4, atol=1e-4)
    assert g_e[0] != 0  # zero weight, nonzero gradient
    with torch.no_grad():  # inference path: blend once, encode many
        torch.testing.assert_close(grid.encode(x, grid.blended_table(e)), out.detach())


def test_nan_inf_and_out_of_range_positions_are_clamped_not_crashing():
    grid = _grid()
    bad = torch.tensor(
        [
            [float("nan")] * 3,
            [float("inf"), -float("inf"), 0.5],
            [-3.0, 7.0, 1e30],
            [1.0000001, -1e-7, float("nan")],
            [-0.0, 1.0, 0.999999],
        ]
    )
    x = torch.cat([bad, _points(100)])
    table = grid.tables[0].detach()
    out = encode(x, table, grid.resolutions)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(
        out, reference_encode(x, table, grid.resolutions), rtol=1e-5, atol=1e-5
    )
    clean = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.5], [0.0, 1.0, 1.0]])
    torch.testing.assert_close(out[:3], encode(clean, table, grid.resolutions))
    # gradients of bad points land in the table too, finite
    t = table.clone().requires_grad_(True)
    encode(x, t, grid.resolutions).sum().backward()
    assert torch.isfinite(t.grad).all()


def test_kernels_are_deterministic_for_any_level_grouping():
    grid = _grid()
    x = _points(5000).numpy()
    table = grid.tables[2].detach().numpy()
    res = np.array(grid.resolutions, np.int32)
    outs = []
    for _ in range(2):
        out = np.empty((5000, 8), np.float32)
        K.encode_forward(x, table, res, out)
        outs.append(out)
    assert np.array_equal(outs[0], outs[1])
    up = np.random.default_rng(1).standard_normal((5000, 8)).astype(np.float32)
    grads = []
    for groups in (1, 2, 3, 4):
        g = np.zeros_like(table)
        K.encode_backward(x, up, res, g, groups)
        grads.append(g)
    assert all(np.array_equal(grads[0], g) for g in grads[1:])


def test_small_and_empty_batches_and_input_checks():
    grid = _grid()
    e = _expression(3)
    with torch.no_grad():
        assert grid(torch.empty(0, 3), e).shape == (0, 8)
        one = torch.tensor([[0.3, 0.6, 0.9]])
        torch.testing.assert_close(
            grid(one, e),
            reference_encode(one, reference_blend(grid.tables, grid.weights(e)), grid.resolutions),
        )
    with pytest.raises(ValueError):
        grid(torch.rand(5, 2), e)
    with pytest.raises(ValueError):
        grid(torch.rand(5, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="positions"):
        grid(torch.rand(5, 3, requires_grad=True), e)


def test_reused_gradient_memory_never_overwrites_a_gradient_still_held():
    grid = _grid()
    x = _points(800)
    e = _expression(3)
    ups = [
        torch.randn(800, TINY.output_dim, generator=torch.Generator().manual_seed(s))
        for s in (1, 2, 3)
    ]

    def ref_grad(up):
        t = grid.tables.detach().clone().requires_grad_(True)
        (
            reference_encode(x, reference_blend(t, grid.weights(e)), grid.resolutions) * up
        ).sum().backward()
        return t.grad

    (grid(x, e) * ups[0]).sum().backward()
    held = grid.tables.grad  # kept by the caller, e.g. for logging
    grid.tables.grad = None
    (grid(x, e) * ups[1]).sum().backward()
    second = grid.tables.grad
    grid.tables.grad = None
    del second  # its memory may now be reused
    (grid(x, e) * ups[2]).sum().backward()
    torch.testing.assert_close(held, ref_grad(ups[0]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grid.tables.grad, ref_grad(ups[2]), rtol=1e-5, atol=1e-5)
    (grid(x, e) * ups[1]).sum().backward()  # accumulates into .grad
    torch.testing.assert_close(
        grid.tables.grad, ref_grad(ups[2]) + ref_grad(ups[1]), rtol=1e-5, atol=1e-5
    )
    assert not np.shares_memory(held.numpy(), grid.tables.grad.numpy())


def test_blend_weights_are_coefficients_over_their_scale():
    cfg = HashGridConfig(levels=2, features=2, log2_table=8, min_resolution=4, max_resolution=8, n_tables=3)
    assert BlendedHashGrid(cfg).weights(torch.tensor([2.0, -3.0])).tolist() == [1.0, 2.0, -3.0]
    scaled = BlendedHashGrid(cfg, expression_scale=(2.0, 0.5))
    assert scaled.weights(torch.tensor([2.0, -3.0])).tolist() == [1.0, 1.0, -6.0]
