"""Train tasks (they call the robustlabel engine)."""

from .transbts import TransBTSTrain

__all__ = ["TransBTSTrain"]
