"""Pure array kernels: NumPy in, NumPy out; no file I/O, no logging side effects."""
