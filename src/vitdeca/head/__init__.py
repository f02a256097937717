"""Head models behind one interface: ICT-FaceKit (``"ict"``, the default) and FLAME (``"flame"``).

>>> head = load_head_model("ict")            # converts ICT-FaceKit once into $VITDECA_HOME
>>> out = head(shape, expression, pose)      # HeadOutput(vertices (B,V,3), landmarks3d (B,68,3))
"""

from __future__ import annotations

from typing import Any

from vitdeca.errors import VitdecaError
from vitdeca.head.base import HeadModel, HeadOutput
from vitdeca.head.landmarks import IBUG68_NAMES

HEAD_MODELS = ("ict", "flame")


def load_head_model(name: str = "ict", **kw: Any) -> HeadModel:
    """Build a head model by name.

    ``"ict"``: keywords of :func:`vitdeca.head.ict.load_ict` (``n_shape``, ``source``, ``home``).
    ``"flame"``: keywords of :func:`vitdeca.head.flame.load_flame` (``path``, ``n_shape``,
    ``n_expression``, ``landmarks``, ``uv_template``, ``masks``).
    """
    if name == "ict":
        from vitdeca.head.ict import load_ict

        return load_ict(**kw)
    if name == "flame":
        from vitdeca.head.flame import load_flame

        return load_flame(**kw)
    raise VitdecaError(f"unknown head model '{name}' (choose from {', '.join(HEAD_MODELS)})")


__all__ = ["HEAD_MODELS", "IBUG68_NAMES", "HeadModel", "HeadOutput", "load_head_model"]
