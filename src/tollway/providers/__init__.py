"""Upstream adapters: one module per provider, translating the canonical model to its wire."""
