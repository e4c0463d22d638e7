"""Task configs, one per model the app can serve (``--conf models``)."""

from .transbts import TransBTSConfig

#: model name -> its TaskConfig class
CONFIGS = {"transbts": TransBTSConfig}

__all__ = ["CONFIGS", "TransBTSConfig"]
