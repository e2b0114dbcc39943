"""Hybrid models: discrete structure trained by search, differentiable parts by gradient.

The structure declarations, the decoupled (DNI) engine and the trainer land with
the hybrid-model and decoupled-engine work; this package holds them.
"""
