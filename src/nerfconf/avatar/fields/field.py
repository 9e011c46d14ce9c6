"""The radiance field of a NeRF blendshape head: where there is head, and what colour.

Density and a geometry feature come from an MLP on the blended hash encoding;
colour from a second MLP on that feature and the view direction in spherical
harmonics (degree 4 as in NeRFBlendShape, or lower: ``sh_degree``). Softplus
keeps density positive; a sigmoid keeps colour in [0, 1].

Two ways to shade (``FieldConfig.shading``):

* ``"sample"`` (NeRFBlendShape's): the colour net runs on every sample along a ray
  and the colours are composited. Two hidden layers of ``hidden`` in the density net.
* ``"deferred"`` (SNeRG's and MERF's): a tiny density decoder (one hidden layer of
  ``density_hidden``) gives density and the feature per sample; the features are
  composited along the ray, and the colour net runs once per pixel on their
  weighted mean. A frame then costs one colour net per pixel instead of one per
  sample, and the per-sample work is the hash lookup and a ~1 kMAC decoder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from nerfconf.avatar.fields.hashgrid import BlendedHashGrid, HashGridConfig


@dataclass(frozen=True)
class FieldConfig:
    n_expression: int = 46
    levels: int = 12
    features: int = 2
    log2_table: int = 14
    min_resolution: int = 16
    max_resolution: int = 512
    hidden: int = 64
    geo_features: int = 15
    #: half-size of the head box in metres, and its centre in the head frame
    box_half: tuple[float, float, float] = (0.12, 0.17, 0.11)
    box_centre: tuple[float, float, float] = (0.0, 0.0, 0.03)
    #: each expression coefficient's blend weight is e_k / expression_scale[k] (enrollment sets its
    #: spread); None is 1, as in bundles made before 2026-11-24
    expression_scale: tuple[float, ...] | None = None
    #: highest degree of the view direction's spherical harmonics the colour net sees (0 to 4).
    #: A monocular video ties head pose to time, so high degrees can key colour to the frame.
    sh_degree: int = 4
    #: "deferred" (one colour net per pixel) or "sample" (one per sample, as NeRFBlendShape)
    shading: str = "deferred"
    #: width of the deferred field's one-layer density decoder
    density_hidden: int = 32

    def __post_init__(self) -> None:
        if self.shading not in SHADINGS:
            raise ValueError(f"shading must be one of {SHADINGS}, got {self.shading!r}")
        for name in ("levels", "features", "hidden", "geo_features", "density_hidden", "min_resolution"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1024:
                raise ValueError(f"{name} must be an integer in [1, 1024], got {value!r}")
        if not isinstance(self.log2_table, int) or not 4 <= self.log2_table <= 24:
            raise ValueError(f"log2_table must be an integer in [4, 24], got {self.log2_table!r}")
        if not 0 <= self.sh_degree <= 4:
            raise ValueError(f"sh_degree must be 0 to 4, got {self.sh_degree}")
        scale = self.expression_scale
        if scale is not None and (len(scale) != self.n_expression or not all(v > 0 for v in scale)):
            raise ValueError(f"expression_scale needs {self.n_expression} positive values, got {scale}")

    def grid(self) -> HashGridConfig:
        return HashGridConfig(
            levels=self.levels,
            features=self.features,
            log2_table=self.log2_table,
            min_resolution=self.min_resolution,
            max_resolution=self.max_resolution,
            n_tables=self.n_expression + 1,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def deferred(self) -> bool:
        return self.shading == "deferred"

    @classmethod
    def from_dict(cls, d: dict) -> FieldConfig:
        """From ``to_dict``'s output after a JSON round trip; keys it lacks keep their defaults,
        except ``shading``: configurations written before it existed shade per sample."""
        if not isinstance(d, dict):
            raise TypeError(f"a field configuration is a JSON object, got {type(d).__name__}")
        d = {"shading": "sample", **d}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


SHADINGS = ("deferred", "sample")


def spherical_harmonics(d: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics up to degree 4 (16 values) of unit directions (N, 3)."""
    x, y, z = d.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    return torch.stack(
        [
            torch.full_like(x, 0.28209479177387814),
            -0.48860251190291987 * y,
            0.48860251190291987 * z,
            -0.48860251190291987 * x,
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * x * z,
            0.54627421529603959 * (xx - yy),
            0.59004358992664352 * y * (-3.0 * xx + yy),
            2.8906114426405538 * x * y * z,
            0.45704579946446572 * y * (1.0 - 5.0 * zz),
            0.3731763325901154 * z * (5.0 * zz - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * zz),
            1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (-xx + 3.0 * yy),
        ],
        dim=-1,
    )


class BlendshapeField(nn.Module):
    def __init__(self, config: FieldConfig) -> None:
        super().__init__()
        self.config = config
        self.encoding = BlendedHashGrid(config.grid(), expression_scale=config.expression_scale)
        width = config.hidden
        n_in = self.encoding.config.output_dim
        if config.deferred:
            self.density_net = nn.Sequential(
                nn.Linear(n_in, config.density_hidden),
                nn.ReLU(inplace=True),
                nn.Linear(config.density_hidden, 1 + config.geo_features),
            )
        else:
            self.density_net = nn.Sequential(
                nn.Linear(n_in, width),
                nn.ReLU(inplace=True),
                nn.Linear(width, width),
                nn.ReLU(inplace=True),
                nn.Linear(width, 1 + config.geo_features),
            )
        self.color_net = nn.Sequential(
            nn.Linear(16 + config.geo_features, width),
            nn.ReLU(inplace=True),
            nn.Linear(width, width),
            nn.ReLU(inplace=True),
            nn.Linear(width, 3),
        )
        # Harmonics above sh_degree reach the colour net as zeros through weights that start (and,
        # with zero input, stay) zero: every renderer can evaluate all 16 and get the same colour.
        used = (config.sh_degree + 1) ** 2
        self.register_buffer("sh_mask", (torch.arange(16) < used).float(), persistent=False)
        with torch.no_grad():
            self.color_net[0].weight[:, used:16] = 0.0
        self.register_buffer("box_half", torch.tensor(config.box_half, dtype=torch.float32))
        self.register_buffer("box_centre", torch.tensor(config.box_centre, dtype=torch.float32))

    def normalize(self, points: torch.Tensor) -> torch.Tensor:
        """Head-frame metres to the hash grid's unit cube."""
        return (points - self.box_centre) / (2 * self.box_half) + 0.5

    def density(self, points: torch.Tensor, expression: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density (N,) and geometry feature (N, G) at head-frame points (N, 3)."""
        return self.density_at(points, self.encoding.blended_table(expression))

    def density_at(self, points: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``density`` with the frame's tables already blended (``encoding.blended_table``)."""
        h = self.density_net(self.encoding.encode(self.normalize(points), table))
        # Shifted softplus starts the field nearly empty, which keeps early gradients tame.
        return nn.functional.softplus(h[:, 0] - 1.0), h[:, 1:]

    def forward(
        self, points: torch.Tensor, directions: torch.Tensor, expression: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_at(points, directions, self.encoding.blended_table(expression))

    def forward_at(
        self, points: torch.Tensor, directions: torch.Tensor, table: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density (N,) and colour (N, 3) from an already blended table (L, T, F), per sample
        (``shading == "sample"``; a deferred field has no colour per sample).

        Training blends once per iteration and back-propagates to that table only
        (``table_adam``); a renderer blends once per frame.
        """
        if self.config.deferred:
            raise ValueError("a deferred field is coloured per pixel (renderer.render_rays), not per sample")
        sigma, geo = self.density_at(points, table)
        return sigma, self.colour(directions, geo)

    def colour(self, directions: torch.Tensor, geo: torch.Tensor) -> torch.Tensor:
        """Colour (N, 3) seen along unit ``directions`` (N, 3) at points with geometry feature ``geo``."""
        sh = spherical_harmonics(directions) * self.sh_mask
        return torch.sigmoid(self.color_net(torch.cat([sh, geo], dim=-1)).float())
