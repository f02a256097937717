"""vitdeca: monocular 3D face reconstruction — DECA with a Vision Transformer encoder and DropKey."""

__version__ = "0.1.0"

from vitdeca.errors import VitdecaError  # noqa: E402

__all__ = ["Reconstructor", "VitdecaError", "__version__"]


def __getattr__(name: str):
    """Lazy exports, so ``import vitdeca`` stays light (no torch until a Reconstructor is wanted)."""
    if name == "Reconstructor":
        from vitdeca.pipeline.reconstructor import Reconstructor

        return Reconstructor
    raise AttributeError(f"module 'vitdeca' has no attribute {name!r}")
