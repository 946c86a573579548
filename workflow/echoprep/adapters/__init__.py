"""Adapters to external tools (ANTs, tedana, upstream GLMsingle); import kernels/io only."""
