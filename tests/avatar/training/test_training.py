"""Field, renderer, trainer and bundle on tiny configurations and a real clip."""

import json

import numpy as np
import pytest
import torch

from nerfconf.avatar.bundle import AvatarBundle, BundleError
from nerfconf.avatar.camera import Camera
from nerfconf.avatar.fields.field import BlendshapeField, FieldConfig, spherical_harmonics
from nerfconf.avatar.rendering.renderer import (
    OccupancyGrid,
    composite,
    distortion,
    ray_box,
    render_rays,
)
from nerfconf.avatar.training.dataset import prepare
from nerfconf.avatar.training.trainer import LR_GAMMA, TrainConfig, Trainer, camera_of, head_boxes
from nerfconf.codec.config import CodecConfig
from nerfconf.types import ParamLayout

from ...conftest import shared_data

TINY = dict(levels=4, features=2, log2_table=10, min_resolution=8, max_resolution=64, hidden=32)


@pytest.fixture(scope="module")
def clip():
    model, data, _ = prepare(shared_data("short_1.mp4"), resolution=48, test_frames=10, n_expression=8,
                             max_frames=60)
    return model, data


def test_spherical_harmonics_are_orthonormal_on_the_sphere():
    d = torch.nn.functional.normalize(torch.randn(200_000, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    sh = spherical_harmonics(d)
    gram = sh.T @ sh * (4 * np.pi / len(d))
    assert torch.allclose(gram, torch.eye(16), atol=0.05)


def test_ray_box_and_compositing():
    o = torch.tensor([[0.0, 0.0, -2.0], [5.0, 5.0, -2.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    near, far = ray_box(o, d, torch.full((3,), -1.0), torch.full((3,), 1.0))
    assert near[0] == pytest.approx(1.0) and far[0] == pytest.approx(3.0) and far[1] <= near[1]
    sigma = torch.tensor([[0.0, 1e4, 0.0]])
    out = composite(sigma, torch.tensor([[[0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]]]), torch.tensor([[1.0, 2.0, 3.0]]),
                    torch.tensor([1.0]))
    assert torch.allclose(out.rgb, torch.tensor([[1.0, 0, 0]]), atol=1e-4)  # the opaque sample wins
    assert out.opacity[0] == pytest.approx(1.0) and out.depth[0] == pytest.approx(2.0)
    empty = composite(torch.zeros(1, 3), torch.zeros(1, 3, 3), torch.tensor([[1.0, 2, 3]]), torch.tensor([1.0]))
    assert torch.allclose(empty.rgb, torch.ones(1, 3))  # nothing there: white background


def test_distortion_loss_is_the_pairwise_sum_and_prefers_a_surface():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(5, 12, generator=g) / 12
    s = (torch.arange(12) + torch.rand(5, 12, generator=g)) / 12
    brute = (w[:, :, None] * w[:, None, :] * (s[:, :, None] - s[:, None, :]).abs()).sum((1, 2))
    brute = brute + (w * w).sum(1) / (3 * 12)
    torch.testing.assert_close(distortion(w, s, 12), brute)
    # the same opacity in one sample scores lower than spread over the ray like fog
    surface, fog = torch.zeros(1, 12), torch.full((1, 12), 0.8 / 12)
    surface[0, 6] = 0.8
    assert distortion(surface, s[:1], 12) < 0.5 * distortion(fog, s[:1], 12)


def test_camera_rays_point_through_pixels():
    cam = Camera(np.eye(3), np.array([0.0, 0.0, -0.5]), focal=100.0, resolution=64)
    o, d = cam.rays(np.array([[31, 31], [63, 31]]))
    assert torch.allclose(o[0], torch.tensor([0.0, 0.0, -0.5]))
    assert d[0, 2] > 0.999 and d[1, 0] > 0  # centre looks ahead, right edge looks right


# Both precisions on every host: a host without native bfloat16 trains in float32 by default,
# and bf16 is emulated (slowly, but the same arithmetic) where the hardware lacks it.
@pytest.mark.parametrize(("shading", "bf16"), [("deferred", False), ("deferred", True), ("sample", False),
                                               ("sample", True)])
def test_training_on_a_real_clip_reduces_the_loss(clip, tmp_path, shading, bf16):
    model, data = clip
    k = model.n_expression
    cfg = FieldConfig(n_expression=k, shading=shading, **TINY)
    train = TrainConfig(iterations=300, rays_per_batch=384, samples_per_ray=24, occupancy_warmup=100,
                        checkpoint_every=150, bf16_mlp=bf16)
    trainer = Trainer(data, cfg, train, (model.bounds_lo[:k], model.bounds_hi[:k]), tmp_path / "work")
    # Judged on fixed rays, not on the batch losses: those are noisy, and they include the mask
    # term, which the schedule turns off part-way.
    before = _photometric_mse(trainer)
    trainer.train(progress=False)
    after = _photometric_mse(trainer)
    assert after < 0.4 * before  # about 0.18 in both precisions and both shadings
    assert 0.0 < trainer.occupancy.fraction() < 1.0  # empty space got pruned
    # resuming restores the weights and the schedule
    again = Trainer(data, cfg, train, (model.bounds_lo[:k], model.bounds_hi[:k]), tmp_path / "work")
    assert again.load_checkpoint() and again.state.iteration == 300
    for a, b in zip(trainer.field.parameters(), again.field.parameters()):
        assert torch.equal(a, b)
    assert again.optimizer.param_groups[0]["lr"] == pytest.approx(trainer.optimizer.param_groups[0]["lr"])


def _photometric_mse(trainer: Trainer, frames=(0, 17, 33), stride: int = 3) -> float:
    """Mean squared colour error of the field on every ``stride``-th pixel of a few training frames,
    rendered without jitter, so that two calls on the same field agree exactly."""
    data = trainer.data
    ys, xs = np.mgrid[0:data.resolution:stride, 0:data.resolution:stride]
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=1)
    errors = []
    with torch.no_grad():
        for i in frames:
            origins, dirs = camera_of(data, i, trainer.poses).rays(pixels)
            expression = torch.from_numpy(data.expressions[i].astype(np.float32))
            out = render_rays(trainer.field, origins, dirs, expression, samples=trainer.config.samples_per_ray,
                              perturb=False)
            target = torch.from_numpy(data.images[i][pixels[:, 1], pixels[:, 0]].astype(np.float32) / 255.0)
            errors.append(float((out.rgb - target).square().mean()))
    trainer.field.train()
    return float(np.mean(errors))


def _trainer(clip, tmp_path, **kw):
    model, data = clip
    k = model.n_expression
    cfg = TrainConfig(**{"rays_per_batch": 256, "samples_per_ray": 16, **kw})
    return Trainer(data, FieldConfig(n_expression=k, **TINY), cfg, (model.bounds_lo[:k], model.bounds_hi[:k]),
                   tmp_path / "work")


def test_a_time_budget_drives_the_schedule_and_stops_the_run(clip, tmp_path):
    trainer = _trainer(clip, tmp_path, iterations=1000, max_minutes=10.0)
    assert trainer.learning_rate() == pytest.approx(1e-3)
    trainer.state.iteration = 100
    trainer.state.seconds = 0.8 * 600  # time is further along than iterations: 2 milestones passed
    assert trainer.progress() == pytest.approx(0.8)
    assert trainer.learning_rate() == pytest.approx(1e-3 * LR_GAMMA**2)
    trainer.state.seconds = 0.0
    trainer.state.iteration = 950
    assert trainer.learning_rate() == pytest.approx(1e-3 * LR_GAMMA**3)
    quick = _trainer(clip, tmp_path / "q", iterations=10**6, max_minutes=0.01, checkpoint_every=10**9)
    state = quick.train(progress=False)
    assert quick.progress() == 1.0 and 0 < state.iteration < 10**6 and state.seconds >= 0.6


def test_head_rays_fall_in_the_head_box_and_expression_noise_stays_in_bounds(clip, tmp_path):
    model, data = clip
    alphas = np.zeros((3, 40, 40), np.uint8)
    alphas[0, 10:20, 5:12] = 255
    alphas[2, 0:3, 30:40] = 9
    boxes = head_boxes(alphas, margin=2)
    assert boxes.tolist() == [[3, 8, 14, 22], [0, 0, 40, 40], [28, 0, 40, 5]]  # an empty mask: whole frame
    trainer = _trainer(clip, tmp_path, head_ray_fraction=1.0, expression_noise=1.0)
    i = int(trainer.train_frames[0])
    x0, y0, x1, y1 = trainer.head_boxes[i]
    px = trainer.sample_pixels(i)
    assert px.shape == (256, 2) and (x1 - x0) * (y1 - y0) < data.resolution**2
    assert (px[:, 0] >= x0).all() and (px[:, 0] < x1).all() and (px[:, 1] >= y0).all() and (px[:, 1] < y1).all()
    e = trainer.training_expression(i).numpy()
    k = model.n_expression
    assert not np.allclose(e, np.clip(data.expressions[i], model.bounds_lo[:k], model.bounds_hi[:k]))
    assert (e >= model.bounds_lo[:k] - 1e-6).all() and (e <= model.bounds_hi[:k] + 1e-6).all()


def test_l2_photometric_loss_is_the_batch_mse_and_unknown_losses_are_refused(clip, tmp_path):
    for name in ("l1", "l2"):
        trainer = _trainer(clip, tmp_path / name, photometric=name, mask_loss_until=0.0)
        stats = trainer.step()
        mse = 10 ** (-stats["psnr"] / 10)
        # Colours are in [0, 1], so the batch's L1 is well above its MSE.
        assert (stats["loss"] == pytest.approx(mse, rel=1e-4)) == (name == "l2")
    with pytest.raises(ValueError, match="photometric"):
        TrainConfig(photometric="huber")


def test_a_lower_view_degree_keeps_the_colour_net_off_the_unused_harmonics(clip, tmp_path):
    model, data = clip
    k = model.n_expression
    cfg = FieldConfig(n_expression=k, sh_degree=1, **TINY)
    trainer = Trainer(data, cfg, TrainConfig(iterations=30, rays_per_batch=256, samples_per_ray=16),
                      (model.bounds_lo[:k], model.bounds_hi[:k]), tmp_path / "work")
    before = trainer.field.color_net[0].weight.detach().clone()
    trainer.train(progress=False)
    after = trainer.field.color_net[0].weight.detach()
    assert not torch.equal(after[:, :4], before[:, :4])  # constant and linear terms learn
    assert torch.count_nonzero(after[:, 4:16]) == 0  # degrees 2 to 4 never come in
    with pytest.raises(ValueError, match="sh_degree"):
        FieldConfig(sh_degree=5)


def _bundle(clip, field=None):
    model, data = clip
    k = model.n_expression
    field = field or BlendshapeField(FieldConfig(n_expression=k, **TINY))
    codec = CodecConfig.fit(ParamLayout(k), np.concatenate([data.expressions, np.zeros((len(data.expressions), 3))], 1))
    occ = OccupancyGrid(field).mask
    return AvatarBundle(field, occ, model, codec, data.resolution, data.focal, {"source": "test"})


@pytest.mark.parametrize("shading", ["deferred", "sample"])
def test_bundle_round_trip_renders_the_same(clip, tmp_path, shading):
    model, _ = clip
    k = model.n_expression
    scale = tuple(float(v) for v in np.linspace(0.5, 4.0, k))
    field = BlendshapeField(FieldConfig(n_expression=k, expression_scale=scale, shading=shading, **TINY))
    with torch.no_grad():
        field.encoding.tables[1:].uniform_(-0.5, 0.5)  # expressions that matter, so their scale shows
    bundle = _bundle(clip, field)
    bundle.save(tmp_path / "b")
    loaded = AvatarBundle.load(tmp_path / "b")
    assert loaded.resolution == bundle.resolution and loaded.codec.tag == bundle.codec.tag
    assert loaded.field.config.expression_scale == scale
    assert loaded.field.config.shading == shading
    assert torch.equal(loaded.field.encoding.inverse_scale, field.encoding.inverse_scale)
    _, data = clip
    cam = camera_of(data, 0)
    o, d = cam.rays(cam.all_pixels()[:500])
    e = torch.from_numpy(data.expressions[0])
    with torch.no_grad():
        a = render_rays(bundle.field, o, d, e, samples=16).rgb
        b = render_rays(loaded.field, o, d, e, samples=16).rgb
    assert torch.allclose(a, b, atol=2e-3)  # fp16 tables


def test_wrong_or_corrupt_bundles_are_refused(clip, tmp_path):
    _bundle(clip).save(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    (tmp_path / "b" / "bundle.json").write_text(json.dumps({**meta, "format": 7}))
    with pytest.raises(BundleError, match="bundle format 7"):
        AvatarBundle.load(tmp_path / "b")
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(meta))
    (tmp_path / "b" / "avatar.safetensors").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="damaged"):
        AvatarBundle.load(tmp_path / "b")
    with pytest.raises(BundleError, match="not an avatar bundle"):
        AvatarBundle.load(tmp_path)
    _bundle(clip).save(tmp_path / "b")
    k = meta["field"]["n_expression"]
    (tmp_path / "b" / "bundle.json").write_text(
        json.dumps({**meta, "field": {**meta["field"], "expression_scale": [1.0] * (k - 1)}}))
    with pytest.raises(BundleError, match=f"expression_scale needs {k} positive values"):
        AvatarBundle.load(tmp_path / "b")


def test_field_configurations_before_deferred_shading_read_as_per_sample():
    old = {k: v for k, v in FieldConfig(**TINY).to_dict().items() if k not in ("shading", "density_hidden")}
    config = FieldConfig.from_dict(old)
    assert config.shading == "sample" and not config.deferred
    assert FieldConfig.from_dict(FieldConfig(**TINY).to_dict()).deferred  # new ones say what they are
    assert [m.out_features for m in BlendshapeField(config).density_net if hasattr(m, "out_features")] == [32, 32, 16]


def test_a_deferred_field_colours_rays_not_samples():
    field = BlendshapeField(FieldConfig(n_expression=2, **TINY))
    assert field.config.deferred and len(field.density_net) == 3  # one hidden layer
    with pytest.raises(ValueError, match="per pixel"):
        field(torch.zeros(4, 3), torch.tensor([[0.0, 0.0, 1.0]] * 4), torch.zeros(2))
    # a ray through empty space shows the background, whatever the colour net says
    with torch.no_grad():
        field.color_net[4].bias.fill_(-10.0)
    o, d = torch.tensor([[0.0, 0.0, -1.0]]), torch.tensor([[1.0, 0.0, 0.0]])  # misses the head box
    out = render_rays(field, o, d, torch.zeros(2), samples=8)
    assert torch.allclose(out.rgb, torch.ones(1, 3)) and float(out.opacity) == 0.0


@pytest.mark.parametrize("bad, message", [
    ({"shading": "forward"}, "shading"), ({"hidden": -5}, "hidden"), ({"log2_table": 30}, "log2_table"),
    ({"log2_table": 13.5}, "log2_table"), ({"density_hidden": True}, "density_hidden")])
def test_field_configurations_out_of_range_are_refused_by_name(clip, tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        FieldConfig(**{**TINY, **bad})
    _bundle(clip).save(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    (tmp_path / "b" / "bundle.json").write_text(json.dumps({**meta, "field": {**meta["field"], **bad}}))
    with pytest.raises(BundleError, match=message):
        AvatarBundle.load(tmp_path / "b")
