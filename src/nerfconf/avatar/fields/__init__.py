"""The avatar's field: the blendshape NeRF (per-expression hash tables blended per frame, a
small decoder) and its hash-grid kernels."""
