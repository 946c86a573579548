"""Stage layer: validate inputs, load, call a kernel or tool, write outputs with sidecars."""
