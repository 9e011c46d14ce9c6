"""Making an avatar: training frames from one video, the trainer and its optimiser, the
analysis-by-synthesis pose alignment, and the whole enrollment."""
