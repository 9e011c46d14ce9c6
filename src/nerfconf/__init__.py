"""nerfconf: 3D video calls at ultra-low bitrate.

The sender sends about 50 face parameters per frame; the receiver renders them
with a personal NeRF head avatar. See README.md and docs/architecture.md.
"""

__version__ = "0.1.0"
