"""vitdeca: monocular 3D face reconstruction — DECA with a Vision Transformer encoder and DropKey."""

__version__ = "0.1.0"

from vitdeca.errors import VitdecaError  # noqa: E402

__all__ = ["VitdecaError", "__version__"]
