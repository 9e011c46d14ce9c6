"""Drawing an avatar: the reference volume renderer training uses, and the receiver's
real-time renderer (numba kernels on CPU, torch on CUDA)."""
