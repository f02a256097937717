"""The ported dlib ResNet against dlib itself, on the shared photos."""

from __future__ import annotations

import itertools

import dlib
import numpy as np
import pytest
import torch

from vitdeca.errors import VitdecaError
from vitdeca.identity import load_identity_net
from vitdeca.identity.dlib_resnet import add_zero_padded


@pytest.fixture(scope="module")
def faces(single_faces, bald_guys):
    return single_faces + bald_guys


@pytest.fixture(scope="module")
def dlib_descriptors(faces, dlib_recognizer) -> np.ndarray:
    """dlib's own descriptors from (image, shape): its chip extraction and its network, no jitter."""
    out = []
    for _, group in itertools.groupby(faces, key=lambda f: id(f.image)):  # one dlib call per photo
        group = list(group)
        shapes = dlib.full_object_detections()
        for face in group:
            shapes.append(face.shape)
        out += [np.array(d) for d in dlib_recognizer.compute_face_descriptor(group[0].image, shapes)]
    return np.array(out)


@pytest.fixture(scope="module")
def port_embeddings(faces, identity_net) -> torch.Tensor:
    """The port end to end: torch chip alignment from dlib's 68 landmarks, then the torch network.

    Same as ``embed`` face by face, but one batched network pass (the photos differ in size).
    """
    with torch.no_grad():
        chips = torch.cat([identity_net.align(f.pixels, f.landmarks().float()) for f in faces])
        return torch.nn.functional.normalize(identity_net.forward_chips(chips), dim=1)


def test_parity_on_dlib_chips(faces, identity_net, dlib_recognizer) -> None:
    chips = [dlib.get_face_chip(f.image, f.shape, size=150, padding=0.25) for f in faces]
    ref = np.array([np.array(d) for d in dlib_recognizer.compute_face_descriptor(chips)])
    with torch.no_grad():
        ours = identity_net.forward_chips(
            torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0
        )
    assert ours.shape == (len(faces), 128)
    assert np.linalg.norm(ref, axis=1).min() > 0.5  # real descriptors, not zeros
    assert np.abs(ours.numpy() - ref).max() <= 1e-4


def test_end_to_end_alignment_matches_dlib(port_embeddings, dlib_descriptors) -> None:
    ref = dlib_descriptors / np.linalg.norm(dlib_descriptors, axis=1, keepdims=True)
    cosine = (port_embeddings.numpy() * ref).sum(1)
    torch.testing.assert_close(port_embeddings.norm(dim=1), torch.ones(len(ref)))
    assert cosine.min() >= 0.99, cosine


def test_same_person_scores_higher(bald_guys, port_embeddings) -> None:
    """bald_guys.jpg: 6 photos each of 4 actors; every same-person pair beats every different-person pair."""
    emb = port_embeddings[-len(bald_guys) :]
    labels = np.array([f.label for f in bald_guys])
    sim = (emb @ emb.T).numpy()
    same, other = labels[:, None] == labels[None], ~np.eye(len(labels), dtype=bool)
    assert sim[same & other].min() > sim[~same].max()
    np.fill_diagonal(sim, -2.0)
    assert (labels[sim.argmax(1)] == labels).all()  # each face's nearest neighbour is the same actor


def test_gradients_reach_image_and_landmarks(single_faces, identity_net) -> None:
    face = single_faces[2]
    image = face.pixels.clone().requires_grad_(True)
    landmarks = face.landmarks().float().requires_grad_(True)
    target = torch.nn.functional.normalize(torch.ones(1, 128), dim=1)
    (identity_net.embed(image, landmarks) * target).sum().backward()
    assert image.grad.abs().sum() > 0 and torch.isfinite(image.grad).all()
    assert landmarks.grad.abs().sum() > 0 and torch.isfinite(landmarks.grad).all()
    assert all(p.grad is None and not p.requires_grad for p in identity_net.parameters())


def test_add_zero_padded() -> None:
    a = torch.arange(4.0).reshape(1, 1, 2, 2)  # [[0, 1], [2, 3]]
    b = torch.ones(1, 2, 3, 1)
    expected = torch.tensor([[[[1.0, 1.0], [3.0, 3.0], [1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]]])
    torch.testing.assert_close(add_zero_padded(a, b), expected)


def test_bad_inputs(identity_net) -> None:
    with pytest.raises(ValueError, match=r"\(B,3,150,150\)"):
        identity_net.forward_chips(torch.zeros(1, 3, 224, 224))
    with pytest.raises(VitdecaError, match="unknown identity network"):
        load_identity_net("arcface")
