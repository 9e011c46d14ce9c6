"""The fast renderer against the reference renderer, and its contract: views, holds, bad input."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfconf.avatar.bundle import HELDOUT_TRACK, AvatarBundle
from nerfconf.avatar.camera import Camera
from nerfconf.avatar.rendering.fast import Renderer, RenderError, RenderSettings
from nerfconf.avatar.rendering.mlp_kernels import CHUNK, InferenceMlp
from nerfconf.avatar.rendering.render_kernels import setup_rays
from nerfconf.avatar.rendering.renderer import ray_box
from nerfconf.avatar.view import View
from nerfconf.evaluate.metrics import psnr
from nerfconf.face.pose import angles_to_rotation
from nerfconf.tracks import ParamTrack
from nerfconf.types import FaceParams

from ..tiny_avatar import DISTANCE, RESOLUTION, K, tiny_bundle, tiny_track

SAMPLE = Path(__file__).resolve().parents[3] / "avatars" / "sample"


@pytest.fixture(scope="module", params=["sample", "deferred"])
def bundle(request):
    return tiny_bundle(shading=request.param)


@pytest.fixture(scope="module")
def renderer(bundle):
    r = Renderer(bundle)
    r.prewarm()
    return r


def _params(expression=None, rotation=(0.0, 0.0, 0.0), translation=(0.0, 0.0, DISTANCE), found=True):
    e = np.zeros(K) if expression is None else np.asarray(expression, float)
    t = None if translation is None else np.asarray(translation, float)
    return FaceParams(e, np.asarray(rotation, float), t, found, 0.0, 0)


def _fidelity(renderer, track, frames):
    return [psnr(renderer.render(track.params(i)).image, renderer.reference(track.params(i))) for i in frames]


def test_fast_path_is_within_40_db_of_the_reference(renderer):
    scores = _fidelity(renderer, tiny_track(), range(4))
    assert min(scores) >= 40.0, scores


@pytest.mark.parametrize("settings", [
    RenderSettings(t_min=0.5), RenderSettings(colour_weight_min=0.05),
    RenderSettings(upsample_tolerance=255, upsample_levels=3, upsample_max_step=1.0)])
def test_the_fidelity_check_fails_a_renderer_that_cuts_corners(bundle, settings):
    scores = _fidelity(Renderer(bundle, settings=settings), tiny_track(), range(2))
    assert max(scores) < 40.0, scores


def test_exact_settings_match_the_reference_to_rounding(bundle):
    exact = RenderSettings(t_min=0.0, colour_weight_min=0.0, probe_alpha=0.0, upsample_tolerance=0.0)
    scores = _fidelity(Renderer(bundle, settings=exact), tiny_track(), range(2))
    assert min(scores) >= 55.0, scores


def test_torch_backend_matches_the_reference_on_cpu(bundle):
    scores = _fidelity(Renderer(bundle, backend="torch"), tiny_track(), range(2))
    assert min(scores) >= 40.0, scores


def test_frame_shapes_depth_and_alpha(renderer):
    frame = renderer.render(_params())
    assert frame.image.shape == (RESOLUTION, RESOLUTION, 3) and frame.image.dtype == np.uint8
    assert frame.alpha.shape == frame.depth.shape == (RESOLUTION, RESOLUTION)
    head = frame.alpha > 0.5
    assert head.sum() > 100 and (frame.alpha[0] < 0.01).all()  # an object in the middle, empty border
    # depth of the head is about the camera distance, minus the head box's front half
    assert np.all(np.abs(frame.depth[head] - DISTANCE) < 0.15)
    assert (frame.image[0] == 255).all()  # white background


def test_background_image_shows_where_the_head_is_not(renderer):
    bg = np.zeros((RESOLUTION, RESOLUTION, 3), np.uint8)
    bg[..., 1] = 200
    frame = renderer.render(_params(), background=bg)
    assert (frame.image[0] == (0, 200, 0)).all()
    with pytest.raises(RenderError, match="background"):
        renderer.render(_params(), background=np.zeros((10, 10, 3), np.uint8))


def test_translation_moves_the_head_in_the_image(renderer):
    def centroid(frame):
        ys, xs = np.nonzero(frame.alpha > 0.3)
        return xs.mean(), ys.mean()

    x0, y0 = centroid(renderer.render(_params(translation=(0.0, 0.0, DISTANCE))))
    x1, y1 = centroid(renderer.render(_params(translation=(0.03, -0.02, DISTANCE))))
    f = renderer.focal
    assert x1 - x0 == pytest.approx(f * 0.03 / DISTANCE, abs=1.0)
    assert y1 - y0 == pytest.approx(-f * 0.02 / DISTANCE, abs=1.0)


def test_missing_translation_uses_the_enrollment_mean(renderer, bundle):
    a = renderer.render(_params(translation=None)).image
    k = bundle.face_model.n_expression
    mid = (bundle.face_model.bounds_lo[k + 3:] + bundle.face_model.bounds_hi[k + 3:]) / 2
    assert np.array_equal(a, renderer.render(_params(translation=mid)).image)


def test_no_face_shows_the_background_then_holds_the_last_face(bundle):
    r = Renderer(bundle)
    empty = r.render(_params(found=False))
    assert (empty.image == 255).all() and (empty.alpha == 0).all()
    face = r.render(_params(expression=[0.5, -0.5, 0.2, 0.0]))
    held = r.render(_params(found=False))
    assert np.array_equal(held.image, face.image) and held.timings.get("held") == 1.0
    turned = r.render(_params(found=False), View(20.0))
    assert not np.array_equal(turned.image, face.image)  # the held face can still be looked around


@pytest.mark.parametrize("view", [View(45, 45, 45), View(-45, -45, -45), View(45, 0, 0, absolute=True),
                                  View.clamped(90, -90, 400)])
def test_views_beyond_the_trained_range_degrade_gracefully(renderer, view):
    frame = renderer.render(_params(rotation=(0.3, -0.3, 0.1)), view)
    assert np.isfinite(frame.depth).all() and np.isfinite(frame.alpha).all()
    assert 0.0 <= frame.alpha.min() and frame.alpha.max() <= 1.0 + 1e-5


def test_a_view_turns_the_head_about_its_centre(renderer):
    front = renderer.render(_params())
    side = renderer.render(_params(), View(40.0))
    reference_side = renderer.reference(_params(), View(40.0))
    assert psnr(side.image, reference_side) >= 40
    # the front view is far from it: the head really turned (the tiny avatar is nearly round, so not very far)
    assert psnr(front.image, reference_side) < psnr(side.image, reference_side) - 5


def test_bad_parameters_raise_render_error(renderer):
    with pytest.raises(RenderError, match="expression"):
        renderer.render(_params(expression=np.zeros(K + 1)))
    with pytest.raises(RenderError, match="NaN"):
        renderer.render(_params(rotation=(np.nan, 0, 0)))
    with pytest.raises(RenderError, match="in front"):
        renderer.render(_params(translation=(0, 0, -1.0)))
    with pytest.raises(RenderError, match="resolution must be 16..4096 pixels, got 4$"):
        Renderer(tiny_bundle(), resolution=4)
    huge = dataclasses.replace(tiny_bundle(), resolution=10**9)  # not what was asked for: None
    with pytest.raises(RenderError, match="got 1000000000, the bundle's$"):
        Renderer(huge)
    with pytest.raises(RenderError, match="device"):
        Renderer(tiny_bundle(), device="tpu")


def test_other_resolutions_scale_the_focal_length(bundle):
    r = Renderer(bundle, resolution=96)
    frame = r.render(tiny_track().params(0))
    assert frame.image.shape == (96, 96, 3)
    assert psnr(frame.image, r.reference(tiny_track().params(0))) >= 40


def _low_degree_field():
    """Degree-1 view dependence, with weights on the unused harmonics that a hostile file could hold."""
    from nerfconf.avatar.fields.field import BlendshapeField, FieldConfig

    from ..tiny_avatar import TINY

    field = BlendshapeField(FieldConfig(n_expression=K, sh_degree=1, shading="sample", **TINY))
    with torch.no_grad():
        field.color_net[0].weight.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(3))
    return field


@pytest.mark.parametrize("which", ["degree 4", "degree 1"])
def test_inference_mlp_matches_the_field(which):
    field = tiny_bundle().field if which == "degree 4" else _low_degree_field()
    mlp = InferenceMlp.from_field(field)
    g = torch.Generator().manual_seed(0)
    n = 2 * CHUNK + 301  # several chunks, the last one short
    enc = torch.randn(n, field.encoding.output_dim, generator=g)
    dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    with torch.no_grad():
        h = field.density_net(enc)
        sigma_ref = torch.nn.functional.softplus(h[:, 0] - 1.0)
        from nerfconf.avatar.fields.field import spherical_harmonics

        sh = spherical_harmonics(dirs) * field.sh_mask
        rgb_ref = torch.sigmoid(field.color_net(torch.cat([sh, h[:, 1:]], -1)))
    sigma, hidden = mlp.density(enc.numpy())
    np.testing.assert_allclose(sigma, sigma_ref.numpy(), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        hidden_ref = torch.relu(field.density_net[:4](enc)).numpy()
    np.testing.assert_allclose(hidden, hidden_ref, rtol=1e-4, atol=1e-4)
    sel = np.arange(0, n, 3)  # more than a chunk, in an odd count
    rgb = mlp.colour(hidden, sel, np.arange(n, dtype=np.int32), dirs.numpy())
    np.testing.assert_allclose(rgb, rgb_ref.numpy()[sel], atol=1e-5)


def test_deferred_mlp_matches_the_field():
    field = tiny_bundle(shading="deferred").field
    mlp = InferenceMlp.from_field(field)
    assert mlp.deferred
    from nerfconf.avatar.fields import hashgrid_kernels as HK
    from nerfconf.avatar.fields.field import spherical_harmonics

    g = torch.Generator().manual_seed(0)
    n = 2 * CHUNK + 301
    x = torch.rand(n, 3, generator=g)
    table = field.encoding.tables.detach()[0].float().contiguous()
    resolutions = np.asarray(field.encoding.resolutions, np.int32)
    with torch.no_grad():
        h = field.density_net(field.encoding.encode(x, table))
    sigma, out = mlp.density_at(x.numpy(), table.numpy(), HK.level_params(resolutions, table.shape[1]))
    np.testing.assert_allclose(sigma, torch.nn.functional.softplus(h[:, 0] - 1.0).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out[:, 1:], h[:, 1:].numpy(), rtol=1e-4, atol=1e-4)
    # the colour net runs on a ray's mean feature, seen along the ray
    dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    mean = torch.randn(n, field.config.geo_features, generator=g)
    with torch.no_grad():
        ref = torch.sigmoid(field.color_net(torch.cat([spherical_harmonics(dirs) * field.sh_mask, mean], -1)))
    rgb = mlp.colour(mean.numpy(), np.arange(n, dtype=np.int32), np.arange(n, dtype=np.int32), dirs.numpy())
    np.testing.assert_allclose(rgb, ref.numpy(), atol=1e-5)


def test_density_at_points_matches_encoding_then_density():
    from nerfconf.avatar.fields import hashgrid_kernels as HK

    field = tiny_bundle().field
    mlp = InferenceMlp.from_field(field)
    x = np.random.default_rng(3).random((CHUNK + 77, 3), dtype=np.float32)
    table = field.encoding.tables.detach()[0].float().contiguous().numpy()  # the neutral table
    resolutions = np.asarray(field.encoding.resolutions, np.int32)
    enc = np.empty((len(x), table.shape[0] * table.shape[2]), np.float32)
    HK.encode_forward(x, table, resolutions, enc)
    sigma_ref, hidden_ref = (a.copy() for a in mlp.density(enc))
    sigma, hidden = mlp.density_at(x, table, HK.level_params(resolutions, table.shape[1]))
    np.testing.assert_allclose(sigma, sigma_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hidden, hidden_ref, rtol=1e-5, atol=1e-6)
    assert sigma.std() > 0  # not a constant field


def test_ray_kernel_matches_camera_rays_and_box(bundle):
    rot = angles_to_rotation(np.radians([12.0, -7.0, 5.0]))
    cam = Camera(rot, np.array([0.02, -0.03, -0.9]), 150.0, 32)
    o, d = cam.rays(cam.all_pixels())
    f = bundle.field
    near_ref, far_ref = ray_box(o, d, f.box_centre - f.box_half, f.box_centre + f.box_half)
    n = 32 * 32
    dirs, near, far = np.empty((n, 3), np.float32), np.empty(n, np.float32), np.empty(n, np.float32)
    lo = (f.box_centre - f.box_half).numpy()
    hi = (f.box_centre + f.box_half).numpy()
    setup_rays(rot, cam.centre.astype(np.float32), 150.0, 32, lo, hi, dirs, near, far)
    assert np.array_equal(dirs, d.numpy())
    hit = (far_ref > near_ref).numpy()
    assert 0 < hit.sum() < n and np.array_equal(far > near, hit)
    np.testing.assert_array_equal(near[hit], near_ref.numpy()[hit])
    np.testing.assert_array_equal(far[hit], far_ref.numpy()[hit])


def test_sample_avatar_held_out_frames_within_40_db():
    bundle = AvatarBundle.load(SAMPLE)
    track = ParamTrack.load(SAMPLE / HELDOUT_TRACK)
    r = Renderer(bundle, resolution=96)
    scores = _fidelity(r, track, (10, 150))
    assert min(scores) >= 40.0, scores


def test_upsampling_uses_fewer_levels_on_small_images():
    s = RenderSettings()
    assert [s.upsampling_levels(r) for r in (64, 96, 128, 255, 256, 512)] == [0, 0, 1, 1, 2, 2]
    assert RenderSettings(upsample_tolerance=0).upsampling_levels(512) == 0
    assert RenderSettings(upsample_max_step=1.0).upsampling_levels(64) == 2
    with pytest.raises(RenderError, match="upsample_max_step"):
        RenderSettings(upsample_max_step=0.0)


def test_a_renderer_at_another_size_draws_what_a_new_one_at_that_size_draws(bundle, renderer):
    small = renderer.at_resolution(RESOLUTION // 2)
    assert small.resolution == RESOLUTION // 2 and renderer.resolution == RESOLUTION
    fresh = Renderer(bundle, RESOLUTION // 2)
    track = tiny_track()
    for i in range(3):  # the second and third frames take the depth-guided path
        a, b = small.render(track.params(i)), fresh.render(track.params(i))
        assert a.image.shape == (RESOLUTION // 2, RESOLUTION // 2, 3)
        assert np.array_equal(a.image, b.image) and np.allclose(a.depth, b.depth)
    # the full-size renderer it came from is untouched
    assert renderer.render(track.params(0)).image.shape == (RESOLUTION, RESOLUTION, 3)
    assert renderer.at_resolution(RESOLUTION) is renderer
    with pytest.raises(RenderError, match="16..4096"):
        renderer.at_resolution(8)
