"""FaceDataset: crops as DECA, landmarks and masks moved through the same matrix as the pixels."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vitdeca.data import Augmentation, ColourJitter, FaceDataset, FaceSample, IdentityBatchSampler
from vitdeca.errors import VitdecaError
from vitdeca.faces import crop_face, crop_square, landmark_mask, read_image, square_matrix, transform_points


def _centroids(image: np.ndarray, points: np.ndarray, radius: int = 4) -> np.ndarray:
    """Intensity centroids (pixel-centre frame) of the blobs nearest to each of ``points``."""
    grey = image.mean(axis=0) if image.ndim == 3 else image
    found = []
    for px, py in points:
        i0, j0 = int(py) - radius, int(px) - radius
        window = grey[i0 : i0 + 2 * radius + 1, j0 : j0 + 2 * radius + 1]
        ii, jj = np.mgrid[i0 : i0 + window.shape[0], j0 : j0 + window.shape[1]] + 0.5
        found.append([(jj * window).sum() / window.sum(), (ii * window).sum() / window.sum()])
    return np.array(found)


def test_identities_and_filtering(dataset_dir: Path) -> None:
    dataset = FaceDataset(dataset_dir)
    assert len(dataset) == 7  # the rejected file is not an item
    assert dataset.identities == ["/loose0.png", "ann", "ben", "cat"]
    np.testing.assert_array_equal(dataset.identity_index, [1, 1, 1, 2, 2, 3, 0])


def test_plain_item_is_the_deca_crop(dataset_dir: Path) -> None:
    dataset = FaceDataset(dataset_dir)
    sample = dataset[4]
    assert isinstance(sample, FaceSample)
    assert sample.image.shape == (3, 224, 224) and sample.image.dtype == torch.float32
    assert sample.landmarks.shape == (68, 2) and sample.mask.shape == (1, 224, 224)
    assert int(sample.identity) == 2 and int(sample.index) == 4
    record = dataset.records[4]
    landmarks = np.array(record["landmarks"])
    crop = crop_face(read_image(dataset.image_root / record["image"]), landmarks)
    np.testing.assert_array_equal(sample.image.numpy(), crop.image.transpose(2, 0, 1) / np.float32(255))
    np.testing.assert_allclose(sample.matrix.numpy(), crop.matrix)
    np.testing.assert_allclose(sample.landmarks.numpy(), transform_points(landmarks, crop.matrix), atol=1e-4)
    np.testing.assert_array_equal(sample.mask[0].numpy(), landmark_mask(sample.landmarks.numpy(), 224, 224))


def test_augmented_landmarks_follow_the_pixels(dataset_dir: Path) -> None:
    dataset = FaceDataset(dataset_dir, augmentation=Augmentation(scale_range=(1.0, 1.6), translation=0.1))
    for index in range(3):
        sample = dataset[index]
        landmarks = sample.landmarks.numpy()
        inside = np.all((landmarks > 6) & (landmarks < 218), axis=1)
        found = _centroids(sample.image.numpy(), landmarks[inside])
        np.testing.assert_allclose(found, landmarks[inside], atol=0.15)  # blobs sit on the landmarks


def test_augmentation_is_reproducible_per_seed_epoch_index(dataset_dir: Path) -> None:
    augmentation = Augmentation(colour=ColourJitter())
    one, two = (
        FaceDataset(dataset_dir, augmentation=augmentation),
        FaceDataset(dataset_dir, augmentation=augmentation),
    )
    np.testing.assert_array_equal(one[2].image.numpy(), two[2].image.numpy())
    np.testing.assert_array_equal(one[2].matrix.numpy(), one[2].matrix.numpy())
    two.set_epoch(1)
    assert not np.allclose(one[2].matrix.numpy(), two[2].matrix.numpy())
    other_seed = FaceDataset(dataset_dir, augmentation=augmentation, seed=5)
    assert not np.allclose(one[2].matrix.numpy(), other_seed[2].matrix.numpy())


def test_scale_and_shift_stay_in_their_ranges(dataset_dir: Path) -> None:
    augmentation = Augmentation(scale_range=(1.3, 1.5), translation=0.1)
    dataset = FaceDataset(dataset_dir, augmentation=augmentation)
    landmarks = np.array(dataset.records[0]["landmarks"])
    centre, unit_side = crop_square(landmarks, 1.0)
    for epoch in range(20):
        dataset.set_epoch(epoch)
        matrix = dataset[0].matrix.numpy()
        side = 224 / matrix[0, 0]
        assert 1.3 * unit_side <= side <= 1.5 * unit_side
        crop_centre = transform_points(
            np.array([112.0, 112.0]), np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
        )
        assert np.all(np.abs(crop_centre - centre) <= 0.1 * unit_side / 1.1 + 1e-9)


def test_colour_jitter_is_off_by_default_and_keeps_geometry(dataset_dir: Path) -> None:
    assert Augmentation().colour is None
    plain = FaceDataset(dataset_dir, augmentation=Augmentation())
    jittered = FaceDataset(dataset_dir, augmentation=Augmentation(colour=ColourJitter(0.3, 0.3, 0.3)))
    a, b = plain[1], jittered[1]
    np.testing.assert_array_equal(a.landmarks.numpy(), b.landmarks.numpy())
    assert not torch.equal(a.image, b.image)
    assert b.image.min() >= 0 and b.image.max() <= 1


def test_saved_masks_are_warped_into_the_new_crop(dataset_dir: Path) -> None:
    records = [json.loads(line) for line in (dataset_dir / "manifest.jsonl").read_text().splitlines()]
    for k, record in enumerate(records):
        if record["status"] != "ok":
            continue
        landmarks = np.array(record["landmarks"])
        matrix = square_matrix(*crop_square(landmarks, 1.25), 224)
        mask = landmark_mask(transform_points(landmarks, matrix), 224, 224).astype(np.uint8) * 255
        cv2.imwrite(str(dataset_dir / f"m{k}.png"), mask)
        record.update(mask=f"m{k}.png", crop_matrix=matrix.tolist())
    (dataset_dir / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    augmentation = Augmentation(scale_range=(1.4, 1.8), translation=0.1)
    from_file = FaceDataset(dataset_dir, augmentation=augmentation, mask_source="file")
    drawn = FaceDataset(dataset_dir, augmentation=augmentation, mask_source="landmarks")
    for index in range(4):
        a, b = from_file[index].mask.bool(), drawn[index].mask.bool()
        assert (a & b).sum() / (a | b).sum() > 0.97


def test_missing_saved_mask_and_missing_image(dataset_dir: Path) -> None:
    with pytest.raises(VitdecaError, match="no saved mask"):
        FaceDataset(dataset_dir, mask_source="file")[0]
    dataset = FaceDataset(dataset_dir)
    (dataset.image_root / dataset.records[0]["image"]).unlink()
    with pytest.raises(VitdecaError, match="0.png"):
        dataset[0]
    with pytest.raises(VitdecaError, match="mask_source"):
        FaceDataset(dataset_dir, mask_source="segnet")


def test_no_usable_faces(tmp_path: Path) -> None:
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"image": "a.jpg", "status": "no_face"}) + "\n")
    (tmp_path / "dataset.json").write_text(json.dumps({"image_root": str(tmp_path)}))
    with pytest.raises(VitdecaError, match="no usable faces"):
        FaceDataset(tmp_path)


def test_dataloader_with_identity_batches(dataset_dir: Path) -> None:
    dataset = FaceDataset(dataset_dir, augmentation=Augmentation())
    sampler = IdentityBatchSampler(dataset.identity_index, identities_per_batch=2, images_per_identity=2)
    batches = list(DataLoader(dataset, batch_sampler=sampler))
    assert len(batches) == len(sampler) >= 1
    batch = batches[0]
    assert isinstance(batch, FaceSample)
    assert batch.image.shape == (4, 3, 224, 224) and batch.landmarks.shape == (4, 68, 2)
    assert batch.mask.shape == (4, 1, 224, 224) and batch.matrix.shape == (4, 2, 3)
    assert batch.identity[0] == batch.identity[1] != batch.identity[2] == batch.identity[3]
