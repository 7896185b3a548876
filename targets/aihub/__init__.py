"""Qualcomm AI Hub target (``targets.aihub:AIHubTarget``). The ``qai_hub`` client is
imported when the target is used, not here."""

from targets.aihub.target import AIHubTarget

__all__ = ["AIHubTarget"]
