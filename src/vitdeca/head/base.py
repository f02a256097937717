"""The head-model interface that every later stage sees (ICT-FaceKit and FLAME implement it).

Besides ``forward``, a head model states its capabilities, so that later stages never test its name:
:attr:`HeadModel.blendshape_names` (ARKit semantics), :attr:`HeadModel.expression_bounds` (the range of
blend-shape weights), :meth:`HeadModel.linear_basis` (a rigid linear blend-shape model's bases) and
:meth:`HeadModel.landmarks3d` (landmarks alone, which a model may compute more cheaply than ``forward``)
and :meth:`HeadModel.eyeballs` (separate eyeball meshes turned by gaze).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn

from vitdeca.batching import each_row


@dataclass(frozen=True)
class LinearBasis:
    """A rigid linear blend-shape head: ``vertices = R(pose[:3]) · (template + [shape, expression] · basis)``
    with R the global rotation about the model origin and nothing else posing the mesh.

    template: (V,3); basis: (n_shape + n_expression, V*3), the ``n_shape`` identity rows first.
    """

    template: torch.Tensor
    basis: torch.Tensor
    n_shape: int

    @property
    def expression_basis(self) -> torch.Tensor:
        """(n_expression, V*3) the expression rows of :attr:`basis`."""
        return self.basis[self.n_shape :]


@dataclass
class HeadOutput:
    """Result of a head-model forward pass.

    vertices: (B,V,3) in model units (see ``HeadModel.units_per_mm``); model space is right-handed,
    y up, the face looking along +z. landmarks3d: (B,68,3) in the iBUG-68 order.
    joints: (B,J,3) or None for models without a skeleton.
    """

    vertices: torch.Tensor
    landmarks3d: torch.Tensor
    joints: torch.Tensor | None = None


class HeadModel(nn.Module):
    """A parametric head: ``forward(shape, expression, pose) -> HeadOutput``.

    Implementations register as buffers: ``faces`` (F,3) long, ``uv_coords`` (T,2) float in [0,1] with
    v up, ``uv_faces`` (F,3) long indices into ``uv_coords``, ``face_mask`` (V,) bool (the face region used
    by the photometric loss and evaluation), and set the ints ``n_shape``, ``n_expression``, ``n_pose``,
    the float ``units_per_mm`` and the str ``name``. Zero codes give the template exactly.

    The buffers come from the model's asset file (identified by :meth:`checksum`), so they are left out of
    state dicts: checkpoints record the head model's name and checksum instead of tens of MB of bases.
    """

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # noqa: ANN001 - nn.Module hook
        return

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001 - nn.Module hook
        return

    name: str
    n_shape: int
    n_expression: int
    n_pose: int
    units_per_mm: float
    landmark_names: tuple[str, ...]
    expression_bounds: tuple[float, float] | None = None  # blend-shape weights' range; None: unbounded (PCA)
    # named vertex ranges {name: (start, end)} (ICT: eye and mouth sockets, ...); none for a PCA head
    regions: Mapping[str, tuple[int, int]] = MappingProxyType({})
    faces: torch.Tensor
    uv_coords: torch.Tensor
    uv_faces: torch.Tensor
    face_mask: torch.Tensor

    def forward(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor) -> HeadOutput:
        """shape (B,n_shape), expression (B,n_expression), pose (B,n_pose) → HeadOutput."""
        raise NotImplementedError

    @property
    def blendshape_names(self) -> tuple[str, ...] | None:
        """ARKit-style names (``browDown_L`` …) of the expression entries when the expression code is a
        set of ARKit-semantics blend-shape weights in [0, 1] (see :mod:`vitdeca.arkit`); None when it is
        a PCA space without such meaning (FLAME). Capability check for ARKit and avatar outputs."""
        return None

    def linear_basis(self) -> LinearBasis | None:
        """The model's :class:`LinearBasis` when it is a rigid linear blend-shape model (ICT), else None
        (FLAME: pose correctives and skinning). Capability check for ARKit targets and folds."""
        return None

    def eyeballs(self):
        """The model's eyeballs (:class:`vitdeca.head.eyes.Eyeballs`: rigid meshes turned by gaze, drawn and
        exported with the head), or None for a model without them (FLAME's eyes are part of its mesh)."""
        return None

    def forward_rows(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor) -> HeadOutput:
        """``forward`` with each row's result, and its gradient, the bits that row gets in a batch of one,
        whatever the batch (a batched product rounds differently from a single row's; per-image fitting
        promises batch-independent codes, :func:`vitdeca.fit.fit_codes`). Here: one forward per row;
        models override it with a cheaper path when they have one."""
        return each_row(self, shape, expression, pose)

    def landmarks3d(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """(B,68,3) landmarks of the codes, equal to ``forward(...).landmarks3d`` and, as
        :meth:`forward_rows`, independent of the batch row by row; models override it with a cheaper path
        when they have one (fitting's landmark stage calls it at every step)."""
        return self.forward_rows(shape, expression, pose).landmarks3d

    @property
    def n_vertices(self) -> int:
        return int(self.template_vertices.shape[0])

    @property
    def template_vertices(self) -> torch.Tensor:
        """(V,3) the mesh at zero codes."""
        raise NotImplementedError

    def checksum(self) -> str:
        """Identity of the loaded model data (name + content hash), stored in checkpoints."""
        raise NotImplementedError

    def check_codes(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor) -> None:
        """Raise ValueError (a bug, not a user error) unless the codes have the model's sizes."""
        batch = shape.shape[0]
        for label, code, size in (
            ("shape", shape, self.n_shape),
            ("expression", expression, self.n_expression),
            ("pose", pose, self.n_pose),
        ):
            if code.ndim != 2 or tuple(code.shape) != (batch, size):
                raise ValueError(f"{self.name}: {label} must be ({batch},{size}), got {tuple(code.shape)}")
