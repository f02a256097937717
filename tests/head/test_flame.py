"""FLAME from a FLAME-format pickle (chumpy-style, random content) against smplx's FLAME layer."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from vitdeca.errors import VitdecaError
from vitdeca.head import load_head_model
from vitdeca.head.derived import cylindrical_uvs
from vitdeca.head.synthetic import flame_pickle_bytes

smplx = pytest.importorskip("smplx")


def _t(array) -> torch.Tensor:
    return torch.tensor(array, dtype=torch.float32)


def _smplx_forward(flame_files, codes, neck=True):
    layer = smplx.FLAME(
        model_path=str(flame_files.smplx),
        num_betas=100,
        num_expression_coeffs=50,
        use_face_contour=True,
        batch_size=5,
    )
    pose = _t(codes["pose"])
    with torch.no_grad():
        return layer(
            betas=_t(codes["shape"]),
            expression=_t(codes["expression"]),
            global_orient=pose[:, :3],
            jaw_pose=pose[:, 3:],
            neck_pose=_t(codes["neck"]) if neck else None,
            leye_pose=_t(codes["eyes"][:, :3]),
            reye_pose=_t(codes["eyes"][:, 3:]),
        )


@pytest.fixture(scope="module")
def flame(flame_files):
    return load_head_model("flame", path=flame_files.ours / "generic_model.pkl")


def test_loads_without_chumpy(flame_files, flame):
    assert "chumpy" not in sys.modules
    with pytest.raises(ModuleNotFoundError, match="chumpy"):  # the stream really holds chumpy objects
        pickle.loads((flame_files.ours / "generic_model.pkl").read_bytes(), encoding="latin1")
    assert (flame.name, flame.n_shape, flame.n_expression, flame.n_pose) == ("flame", 100, 50, 6)
    assert flame.units_per_mm == 0.001 and flame.n_vertices == 5023 and flame.faces.shape == (9976, 3)


def test_matches_smplx_vertices_joints_and_contour_landmarks(flame_files, flame, flame_codes):
    ref = _smplx_forward(flame_files, flame_codes)
    c = flame_codes
    out = flame(
        _t(c["shape"]), _t(c["expression"]), _t(c["pose"]), neck_pose=_t(c["neck"]), eye_pose=_t(c["eyes"])
    )
    torch.testing.assert_close(out.vertices, ref.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.joints, ref.joints[:, :5], atol=1e-5, rtol=0)
    # smplx appends 51 static then 17 contour landmarks; ours are in iBUG order (contour first).
    # smplx picks the contour by the global rotation only, so compare without neck pose.
    ref = _smplx_forward(flame_files, {**c, "neck": np.zeros((5, 3))})
    out = flame(_t(c["shape"]), _t(c["expression"]), _t(c["pose"]), eye_pose=_t(c["eyes"]))
    ref_lmk = torch.cat([ref.joints[:, 5 + 51 :], ref.joints[:, 5 : 5 + 51]], dim=1)
    torch.testing.assert_close(out.landmarks3d, ref_lmk, atol=1e-5, rtol=0)


def test_rows_of_a_batch_get_the_bits_of_a_batch_of_one(flame, flame_codes):
    """The generic ``forward_rows`` (one forward per row) and so ``landmarks3d``: each row as alone."""
    c = flame_codes
    shape, expression, pose = _t(c["shape"]), _t(c["expression"]), _t(c["pose"])
    alone = [flame(shape[b : b + 1], expression[b : b + 1], pose[b : b + 1]) for b in range(len(shape))]
    rows = flame.forward_rows(shape, expression, pose)
    for name in ("vertices", "landmarks3d", "joints"):
        assert torch.equal(getattr(rows, name), torch.cat([getattr(a, name) for a in alone])), name
    assert torch.equal(flame.landmarks3d(shape, expression, pose), rows.landmarks3d)


def test_capabilities_of_a_pca_model_with_skinning(flame, flame_codes):
    """No ARKit semantics, no expression bounds, no rigid linear view; landmarks3d is the forward's (row by
    row: to rounding of the batched forward)."""
    assert flame.blendshape_names is None and flame.expression_bounds is None and flame.linear_basis() is None
    c = flame_codes
    codes = _t(c["shape"]), _t(c["expression"]), _t(c["pose"])
    torch.testing.assert_close(flame.landmarks3d(*codes), flame(*codes).landmarks3d, atol=1e-6, rtol=0)


def _deca_row(yaw_deg: float) -> int:
    """DECA's FLAME.py lookup: round, clamp at 39, negative yaws map to 39 - yaw, beyond -39 to 78."""
    d = min(round(yaw_deg), 39)
    return d if d >= 0 else (78 if d < -39 else 39 - d)


def test_deca_embedding_uses_deca_yaw_convention(flame_files, flame_codes):
    head = load_head_model("flame", path=flame_files.deca, n_shape=100, n_expression=50)
    c = flame_codes
    out = head(_t(c["shape"]), _t(c["expression"]), _t(c["pose"]), neck_pose=_t(c["neck"]))
    ref = _smplx_forward(flame_files, {**c, "eyes": np.zeros((5, 6))})
    torch.testing.assert_close(out.vertices, ref.vertices, atol=1e-5, rtol=0)
    emb, faces, verts = flame_files.embedding, flame_files.arrays["f"].astype(np.int64), ref.vertices.numpy()
    for b in range(5):
        head_rot = Rotation.from_rotvec(c["pose"][b, :3]) * Rotation.from_rotvec(c["neck"][b])
        yaw = np.degrees(head_rot.as_euler("ZYX")[1])
        row = _deca_row(yaw)
        idx = np.concatenate([emb["dynamic_faces"][row], emb["static_faces"]])
        bary = np.concatenate([emb["dynamic_bary"][row], emb["static_bary"]])
        expected = np.einsum("lcx,lc->lx", verts[b][faces[idx]], bary)
        np.testing.assert_allclose(out.landmarks3d[b].numpy(), expected, atol=1e-5)
    assert _deca_row(np.degrees(0.9)) == 39  # sample 0 (yaw +52°) uses the last positive row


def test_zero_codes_give_the_template_and_sizes_are_configurable(flame_files):
    head = load_head_model("flame", path=flame_files.ours, n_shape=300, n_expression=100)
    assert (head.n_shape, head.n_expression) == (300, 100)
    out = head(torch.zeros(2, 300), torch.zeros(2, 100), torch.zeros(2, 6))
    assert torch.equal(out.vertices[0], head.template_vertices)
    np.testing.assert_array_equal(
        head.template_vertices.numpy(), flame_files.arrays["v_template"].astype(np.float32)
    )
    with pytest.raises(VitdecaError, match="n_shape"):
        load_head_model("flame", path=flame_files.ours, n_shape=301)


def test_env_variable_and_missing_model_message(flame_files, monkeypatch):
    monkeypatch.setenv("VITDECA_FLAME", str(flame_files.ours))
    assert load_head_model("flame").n_vertices == 5023
    monkeypatch.delenv("VITDECA_FLAME")
    with pytest.raises(VitdecaError, match=r"flame\.is\.tue\.mpg\.de.*VITDECA_FLAME"):
        load_head_model("flame")
    with pytest.raises(VitdecaError, match=r"nope\.pkl: no such FLAME model file"):
        load_head_model("flame", path=flame_files.ours / "nope.pkl")


def _write(folder, data: bytes):
    path = folder / "generic_model.pkl"
    path.write_bytes(data)
    return path


@pytest.fixture()
def bad_dir(flame_files, tmp_path):
    """A folder with a valid landmark embedding, so only the model file (written by the test) is broken."""
    for name in ("flame_static_embedding.pkl", "flame_dynamic_embedding.npy"):
        (tmp_path / name).symlink_to(flame_files.ours / name)
    return tmp_path


def test_truncated_and_garbage_model_files(flame_files, bad_dir):
    good = (flame_files.ours / "generic_model.pkl").read_bytes()
    path = _write(bad_dir, good[: len(good) // 3])
    with pytest.raises(VitdecaError, match=r"generic_model\.pkl: not a readable pickle.*truncated"):
        load_head_model("flame", path=path)
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(VitdecaError, match=r"generic_model\.pkl: not a readable pickle"):
        load_head_model("flame", path=path)


def test_missing_key_and_wrong_shape(flame_files, bad_dir):
    arrays = dict(flame_files.arrays)
    del arrays["posedirs"]
    path = _write(bad_dir, flame_pickle_bytes(arrays))
    with pytest.raises(VitdecaError, match=r"generic_model\.pkl: missing 'posedirs'"):
        load_head_model("flame", path=path)
    arrays = {**flame_files.arrays, "shapedirs": flame_files.arrays["shapedirs"][:, :, :20]}
    path.write_bytes(flame_pickle_bytes(arrays))
    with pytest.raises(VitdecaError, match=r"'shapedirs' has 20 components, expected 400"):
        load_head_model("flame", path=path)
    arrays = {**flame_files.arrays, "weights": flame_files.arrays["weights"][:100]}
    path.write_bytes(flame_pickle_bytes(arrays))
    with pytest.raises(VitdecaError, match=r"'weights' has shape \(100, 5\), expected \(5023, 5\)"):
        load_head_model("flame", path=path)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_hostile_pickle_is_refused(bad_dir):
    path = _write(bad_dir, pickle.dumps({"v_template": _Evil()}, protocol=2))
    with pytest.raises(VitdecaError, match=r"refusing to load \(unexpected object (posix|os|nt)\.system"):
        load_head_model("flame", path=path)


def test_missing_landmark_embedding_message(flame_files, tmp_path):
    (tmp_path / "generic_model.pkl").symlink_to(flame_files.ours / "generic_model.pkl")
    with pytest.raises(VitdecaError, match=r"landmark_embedding\.npy.*flame_static_embedding\.pkl"):
        load_head_model("flame", path=tmp_path)


def test_uv_template_and_masks_files(flame_files, tmp_path):
    rng = np.random.default_rng(3)
    faces = flame_files.arrays["f"].astype(np.int64)
    uvs = rng.random((6000, 2))
    uv_faces = rng.integers(0, 6000, size=faces.shape)
    lines = [f"v {x} {y} {z}" for x, y, z in flame_files.arrays["v_template"]]
    lines += [f"vt {u} {v}" for u, v in uvs]
    lines += [
        f"f {a + 1}/{ta + 1} {b + 1}/{tb + 1} {c + 1}/{tc + 1}"
        for (a, b, c), (ta, tb, tc) in zip(faces, uv_faces, strict=True)
    ]
    (tmp_path / "head_template.obj").write_text("\n".join(lines) + "\n")
    face_idx = rng.choice(5023, size=700, replace=False)
    (tmp_path / "FLAME_masks.pkl").write_bytes(pickle.dumps({"face": face_idx, "scalp": np.arange(5)}))
    head = load_head_model(
        "flame",
        path=flame_files.ours,
        uv_template=tmp_path / "head_template.obj",
        masks=tmp_path / "FLAME_masks.pkl",
    )
    np.testing.assert_allclose(head.uv_coords.numpy(), uvs, atol=1e-7)
    np.testing.assert_array_equal(head.uv_faces.numpy(), uv_faces)
    assert set(np.flatnonzero(head.face_mask.numpy())) == set(face_idx)
    (tmp_path / "other.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3/1\n")
    with pytest.raises(VitdecaError, match=r"other\.obj: UV template faces do not match"):
        load_head_model("flame", path=flame_files.ours, uv_template=tmp_path / "other.obj")


def test_default_uvs_and_face_mask_without_extra_files(flame):
    assert flame.uv_coords.min() >= 0 and flame.uv_coords.max() <= 1
    assert flame.uv_faces.shape == flame.faces.shape and flame.uv_faces.max() < len(flame.uv_coords)
    assert 0 < flame.face_mask.sum() < flame.n_vertices


def test_cylindrical_uvs_on_a_sphere():
    trimesh = pytest.importorskip("trimesh")
    sphere = trimesh.creation.icosphere(subdivisions=3)
    uv, uv_faces = cylindrical_uvs(np.asarray(sphere.vertices), np.asarray(sphere.faces))
    assert uv.min() >= 0 and uv.max() <= 1
    corner_u = uv[uv_faces][..., 0]
    radius = np.hypot(sphere.vertices[:, 0], sphere.vertices[:, 2])
    away_from_poles = (radius[sphere.faces] > 0.2).all(1)  # the projection is singular at the poles
    spread = corner_u.max(1) - corner_u.min(1)
    assert spread[away_from_poles].max() < 0.1  # no triangle wraps around the seam
    front = np.argmax(sphere.vertices[:, 2])
    assert abs(uv[front, 0] - 0.5) < 0.05  # facing +z maps to the middle of the texture
    top, bottom = np.argmax(sphere.vertices[:, 1]), np.argmin(sphere.vertices[:, 1])
    assert uv[top, 1] == pytest.approx(1.0) and uv[bottom, 1] == pytest.approx(0.0)
