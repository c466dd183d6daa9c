"""CPU stand-in for flash_attn (test environment only; see tests/cpu_shims/README.md)."""

__version__ = "0.0.0+cpu-shim"
