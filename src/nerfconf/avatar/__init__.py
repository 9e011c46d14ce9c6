"""The personal head avatar: a NeRF blendshape field, how it is trained, and how it is drawn.

``fields`` holds the representation, ``training`` makes one from a video, ``rendering``
draws it; the bundle format, head pose and camera, views and the sender's pose fit are
shared at this level (docs/architecture.md).
"""
