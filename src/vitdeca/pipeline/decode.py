"""From codes to :class:`FaceResult`: decode once, extract the photo texture, build the neutral (NoW) and
detail meshes, measure and draw the eyes (:mod:`vitdeca.pipeline.eyes`), and map the landmarks back to
original-image pixels."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from vitdeca import media
from vitdeca.pipeline.eyes import draw_eyes, eye_topology, eyes_hidden_by_head, measure_eyes, settle_eyelids
from vitdeca.pipeline.results import DetailMesh, FaceResult, MeshTopology


def crop_batch(crops, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B,3,S,S) float images in [0,1] of the crops' uint8 images."""
    images = np.stack([c.crop.image for c in crops]).astype(np.float32) / 255.0
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)


def mesh_topology(model) -> MeshTopology:
    """The head model's shared triangles and UV layout as numpy arrays."""
    from vitdeca.arkit import arkit_mapping

    head = model.head
    return MeshTopology(
        faces=head.faces.cpu().numpy(),
        uv_coords=head.uv_coords.cpu().numpy(),
        uv_faces=head.uv_faces.cpu().numpy(),
        head_model=head.name,
        units_per_mm=float(head.units_per_mm),
        arkit=arkit_mapping(head) if head.blendshape_names else None,
        eyes=None if (eyes := model.head.eyeballs()) is None else eye_topology(eyes),
    )


def texel_uvs(texel_index: torch.Tensor, size: int) -> np.ndarray:
    """UV coordinates (N,2) (v up) of the centres of flat texel indices ``i*S + j`` of an S×S map."""
    index = texel_index.cpu().numpy()
    rows, cols = index // size, index % size
    return np.stack([(cols + 0.5) / size, 1.0 - (rows + 0.5) / size], axis=1).astype(np.float32)


@torch.no_grad()
def detail_mesh(model, recon, index: int) -> DetailMesh:
    """The dense detail mesh of face ``index`` of a :class:`~vitdeca.model.Reconstruction` decoded with
    detail (:meth:`DecaModel.detail_mesh`) → :class:`DetailMesh` (one vertex per covered texel, with the
    texel centre as its UV)."""
    dense = model.detail_mesh(recon, index=index)
    uv_size = recon.displacement_uv.shape[-1]
    return DetailMesh(
        dense.vertices[0].cpu().numpy(), dense.faces.cpu().numpy(), texel_uvs(dense.texel_index, uv_size)
    )


def _uint8(images: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) float [0,1] → (B,H,W,3) uint8."""
    return media.float_to_uint8(images.permute(0, 2, 3, 1))


@torch.no_grad()
def decode_results(
    model,
    codes,
    crops,
    detail: bool = True,
    topology: MeshTopology | None = None,
    fit_nme: np.ndarray | None = None,
    held_gaze: np.ndarray | None = None,
    settle_eyes: bool = True,
    precision: str = "fp32",
) -> list[FaceResult]:
    """Decode ``codes`` (batch B) of ``crops`` (B :class:`FaceCrop`) into results.

    The texture is the photo sampled into UV where the face is visible, the model's albedo elsewhere.
    ``held_gaze`` (B,2,2): the gaze of closed or half-closed eyes
    (:func:`~vitdeca.pipeline.eyes.measure_eyes`). ``settle_eyes``: the eyeLook* and eyeBlink weights
    from the crops' gaze and eyelids (:func:`~vitdeca.pipeline.eyes.settle_eyelids`). ``precision``: of the
    albedo and detail decoders (:func:`vitdeca.model.inference_autocast`); everything else is float32.
    """
    from vitdeca.faces import invert_similarity, transform_points

    topology = topology or mesh_topology(model)
    measures = [None] * len(crops)
    if topology.eyes is not None:
        codes, measures = _eyes_of_faces(model, codes, crops, topology, held_gaze, settle_eyes)
    recon, arrays = _decode_arrays(model, codes, crops, detail, precision)
    if topology.eyes is not None:
        draw_eyes(arrays, model.head.eyeballs(), topology.eyes, measures, codes)
    results = []
    for b, crop in enumerate(crops):
        loader = None
        if recon.displacement_uv is not None:
            loader = partial(detail_mesh, model, recon, b)
        face = {name: values[b] for name, values in arrays.items()}
        alpha = face.pop("alpha")
        landmarks2d = transform_points(face.pop("crop_landmarks2d"), invert_similarity(crop.crop.matrix))
        visible = face.pop("landmarks_visible") & inside_image(landmarks2d, crop.image_shape)
        results.append(
            FaceResult(
                face_index=crop.face_index,
                box=np.asarray(crop.box, dtype=np.float64),
                score=float(crop.score),
                codes=codes.index(b).detach().to("cpu"),
                landmarks2d=landmarks2d,
                landmarks_visible=visible,
                detected_landmarks=np.asarray(crop.landmarks, dtype=np.float64),
                crop=crop.crop.image,
                crop_matrix=np.asarray(crop.crop.matrix, dtype=np.float64),
                alpha=alpha,
                depth_png=media.depth_to_uint8(face.pop("depth"), alpha > 0.5, near_is_large=False),
                mesh=topology,
                detail_loader=loader,
                fit_nme=None if fit_nme is None else float(fit_nme[b]),
                eyes=measures[b],
                **face,
            )
        )
    return results


PANEL_MARGIN_PX = 4  # crop pixels of canvas beyond the posed head's projection
MAX_CANVAS_PX = 768  # the largest render of :func:`render_in_image`


@torch.no_grad()
def render_in_image(
    model, face: FaceResult, image_shape: tuple[int, int], scale: float = 1.0, precision: str = "fp32"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``face``'s textured and grey shape renders and alpha, (H,W,3) uint8, (H,W,3) uint8, (H,W) float,
    over a whole image of ``image_shape`` (H,W): the head is rendered on a square canvas around the crop
    that holds all of its projection, so it is not cut at the crop's edge as the crop-space renders
    warped back are. ``scale``: output pixels per image pixel the renders are meant for (e.g. a panel
    height ÷ H); the canvas is rendered at about that resolution (at most :data:`MAX_CANVAS_PX`).

    Canvas of ``k`` crop sides at ``u`` canvas pixels per crop pixel: the camera (s, tx, ty) becomes
    (s/k, tx, ty), so canvas pixel = u·(crop pixel + (k−1)·S/2), and image → canvas is u·(crop matrix)
    shifted by that."""
    from vitdeca.model import inference_autocast
    from vitdeca.pipeline.eyes import draw_eyes
    from vitdeca.render.camera import project_points

    device = model.camera_scale0.device
    codes, size = face.codes.to(device), face.crop.shape[0]
    vertices = torch.from_numpy(face.vertices).to(device)[None]
    projected = project_points(vertices, codes.camera, size, size)[0].cpu().numpy()
    k = max(1.0, 2.0 * (float(np.abs(projected - size / 2).max()) + PANEL_MARGIN_PX) / size)
    crop_to_image = float(np.sqrt(abs(np.linalg.det(face.crop_matrix[:, :2]))))  # crop px per image px
    u = min(max(scale / crop_to_image, 0.5), 4.0, MAX_CANVAS_PX / (k * size))
    canvas = max(int(round(k * size * u)), 8)
    u = canvas / (k * size)
    codes = codes.replace(camera=codes.camera * codes.camera.new_tensor([1.0 / k, 1.0, 1.0]))
    with inference_autocast(device, precision):
        recon = model.decode(codes, image_size=canvas)
    render, shape = recon.renders()
    arrays = {
        "render": _uint8(render),
        "shape_render": _uint8(shape),
        "alpha": recon.alpha[:, 0].cpu().numpy(),
        "depth": recon.depth[:, 0].cpu().numpy(),
    }
    if face.eyes is not None and face.mesh.eyes is not None:
        draw_eyes(arrays, model.head.eyeballs(), face.mesh.eyes, [face.eyes], codes.to("cpu"))
    matrix = u * np.asarray(face.crop_matrix, dtype=np.float64)
    matrix[:, 2] += u * (k - 1.0) * size / 2.0
    out_size = (image_shape[1], image_shape[0])
    render, shape, alpha = (media.warp_to_image(arrays[name][0], matrix, out_size) for name in
                            ("render", "shape_render", "alpha"))  # fmt: skip
    return render, shape, alpha


def inside_image(points: np.ndarray, image_shape: tuple[int, int] | None) -> np.ndarray:
    """(N,) bool: pixel-centre-frame points (N,2) within an image of ``image_shape`` (H, W) (all True
    when the shape is unknown)."""
    if image_shape is None:
        return np.ones(len(points), dtype=bool)
    height, width = image_shape
    return (points[:, 0] >= 0) & (points[:, 0] <= width) & (points[:, 1] >= 0) & (points[:, 1] <= height)


def _eyes_of_faces(model, codes, crops, topology: MeshTopology, held_gaze, settle: bool):
    """(codes, measures): each face's gaze and blink (:func:`~vitdeca.pipeline.eyes.measure_eyes`) and,
    with ``settle`` and ARKit semantics, its codes with the eyes' weights settled
    (:func:`~vitdeca.pipeline.eyes.settle_eyelids`). The faces go together, and each gets the bits it
    gets alone: every head and eyeball evaluation on the way is row by row
    (:mod:`vitdeca.batching`), so a face's eyes never depend on the other faces of the batch."""
    from vitdeca.fit import landmarks2d

    eyes, size = model.head.eyeballs(), crops[0].crop.image.shape[0]
    fitted = landmarks2d(model, codes, size).cpu().numpy()
    hidden = eyes_hidden_by_head(model, codes)
    measures = measure_eyes(eyes, codes, crops, fitted, size, held_gaze, hidden)
    if settle and topology.arkit is not None:
        codes = settle_eyelids(model, codes, crops, measures, topology.arkit, size)
    return codes, measures


def _decode_arrays(model, codes, crops, detail: bool, precision: str = "fp32"):
    """One decode of the batch (with the detail branch when ``detail`` and the model and codes have it):
    (the Reconstruction, per-batch numpy arrays keyed by FaceResult field)."""
    from vitdeca.model import inference_autocast
    from vitdeca.render.visibility import render_visibility

    with inference_autocast(codes.shape.device, precision):
        recon = model.decode(codes, detail=None if detail else False)
    texture = model.photo_texture(crop_batch(crops, codes.shape.device), recon)
    zeros = [torch.zeros_like(codes.expression), torch.zeros_like(codes.pose)]
    neutral = model.head(codes.shape, *zeros)
    arrays = {
        "vertices": recon.vertices,
        "neutral_vertices": neutral.vertices,
        "landmarks3d": recon.landmarks3d,
        "neutral_landmarks3d": neutral.landmarks3d,
        "crop_landmarks2d": recon.landmarks2d.double(),
        "alpha": recon.alpha[:, 0],
        "depth": recon.depth[:, 0],
        "landmarks_visible": render_visibility(recon.landmarks3d, codes.camera, recon.depth, recon.alpha),
    }
    arrays = {name: value.cpu().numpy() for name, value in arrays.items()}
    render, shape = recon.renders()
    arrays["render"], arrays["shape_render"] = _uint8(render), _uint8(shape)
    arrays["texture"] = _uint8(texture)
    return recon, arrays
