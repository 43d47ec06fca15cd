"""Figures for the course: diagrams, image montages, loss curves, interactive viewers (static when headless)."""

from .diagram import draw_pcrl_flow

__all__ = ["draw_pcrl_flow"]
