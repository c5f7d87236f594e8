"""Differentiable ops, one family per file; each Function calls ``ctx.backend.<kernel>``."""
