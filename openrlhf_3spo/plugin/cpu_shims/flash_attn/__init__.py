"""CPU stand-in for flash_attn (the --cpu mode only; see README.md beside it)."""

__version__ = "0.0.0+cpu-shim"
