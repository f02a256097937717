"""The iBUG-68 (Multi-PIE) landmark order shared by every head model and the 2D detectors.

Index 0 is the jaw contour point on the subject's right (the image's left in a frontal photo); the
groups follow the usual 68-point markup: jaw 0-16, right brow 17-21, left brow 22-26, nose bridge
27-30, lower nose 31-35, right eye 36-41, left eye 42-47, outer lip 48-59, inner lip 60-67.
"""

from __future__ import annotations

N_LANDMARKS = 68

_GROUPS: tuple[tuple[str, int], ...] = (
    ("jaw", 17),
    ("right_brow", 5),
    ("left_brow", 5),
    ("nose_bridge", 4),
    ("nose_lower", 5),
    ("right_eye", 6),
    ("left_eye", 6),
    ("outer_lip", 12),
    ("inner_lip", 8),
)

IBUG68_NAMES: tuple[str, ...] = tuple(f"{group}_{i:02d}" for group, n in _GROUPS for i in range(n))
"""Names of the 68 landmarks in iBUG order, e.g. ``jaw_00`` … ``inner_lip_07``."""


def _group_indices() -> dict[str, tuple[int, ...]]:
    out, start = {}, 0
    for group, n in _GROUPS:
        out[group] = tuple(range(start, start + n))
        start += n
    return out


IBUG68_GROUPS: dict[str, tuple[int, ...]] = _group_indices()
"""Group name → landmark indices (e.g. ``IBUG68_GROUPS["right_eye"] == (36, …, 41)``)."""


def _mirror_order() -> tuple[int, ...]:
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]  # brows, nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48 + i, 54 - i) for i in range(3)] + [(55, 59), (56, 58)]  # outer lip
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lip
    order = list(range(N_LANDMARKS))
    for a, b in pairs:
        order[a], order[b] = b, a
    return tuple(order)


IBUG68_MIRROR: tuple[int, ...] = _mirror_order()
"""The landmark each landmark becomes in the mirror image (``points[IBUG68_MIRROR]`` with x → −x is the
mirrored face's markup): ``jaw_00`` ↔ ``jaw_16``, ``right_eye`` ↔ ``left_eye``, the midline fixed."""
