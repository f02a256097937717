"""Photo textures in new views: DECA's rule (photo where visible, albedo elsewhere) vs completion
(``DecaModel.photo_texture``: facing-weighted photo, mirrored photo for the hidden side, colour-matched
albedo, feathered seams).

Measured on a ``vitdeca synth`` set with several images per subject (default: yaw uniform in ±90°) with the
true codes, so only the texture rule differs: for every ordered pair (A, B) of images of one subject, the
texture taken from image A is rendered in B's pose and compared with image B, both de-shaded (divided by the
SH shading of the true light, so the albedo is compared). Error: mean absolute difference on the 0–255 scale
over B's face pixels (the synthetic face mask), split into pixels whose surface A saw squarely (facing
confidence ≥ 0.5) and the rest (hidden from A or seen at a grazing angle). A bootstrap 95 % interval over
subjects of the difference (completion − DECA's rule) says whether it is beyond noise.

Usage: ``python benchmarks/bench_texture.py --synth DIR``; writes ``benchmarks/results/texture.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import cv2
import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "texture.md"
BOOTSTRAP = 2000
MIN_SHADING = 0.05


def subject_batches(dataset: Path, size: int) -> dict[str, dict]:
    """{subject: {"images" (N,3,S,S) RGB [0,1], "masks" (N,1,S,S), "codes" {name: (N,...)}}}, resized to
    S = ``size`` (the weak-perspective codes do not depend on the image size)."""
    codes = np.load(dataset / "codes.npz")
    records = [json.loads(line) for line in (dataset / "manifest.jsonl").read_text().splitlines()]
    by_image = {r["image"]: r for r in records}
    root = dataset / "iphone_pictures"
    out: dict[str, dict] = {}
    for subject in sorted(set(codes["subject"].tolist())):
        rows = np.nonzero(codes["subject"] == subject)[0]
        images, masks = [], []
        for row in rows:
            record = by_image[str(codes["image"][row])]
            bgr = cv2.resize(
                cv2.imread(str(root / record["image"]), cv2.IMREAD_COLOR), (size, size), cv2.INTER_AREA
            )
            images.append(bgr[..., ::-1].astype(np.float32) / 255.0)
            mask = cv2.imread(str(dataset / record["mask"]), cv2.IMREAD_GRAYSCALE)
            masks.append(cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA) > 127)
        out[subject] = {
            "images": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
            "masks": torch.from_numpy(np.stack(masks))[:, None].float(),
            "codes": {
                k: torch.from_numpy(codes[k][rows])
                for k in ("shape", "expression", "pose", "camera", "light")
            },
        }
    return out


def textures(model, batch: dict):
    """(recon, de-shaded images, {rule: (N,3,S,S) albedo textures}, confidence (N,1,S,S)) of one subject."""
    from vitdeca.codes import Codes
    from vitdeca.render import texture as tex

    c = batch["codes"]
    albedo = torch.zeros(len(c["shape"]), model.layout.n_albedo)
    codes = Codes(c["shape"], c["expression"], c["pose"], c["camera"], c["light"], albedo)
    with torch.no_grad():
        recon = model.decode(codes, detail=False)
        flat = (batch["images"] / recon.shading.clamp_min(MIN_SHADING)).clamp(0.0, 1.0)
        colours, visible = model.extract_texture(flat, recon)
        confidence = visible * tex.facing(model.renderer.uv, recon.vertices)
        rules = {
            "DECA's rule (photo where visible, albedo elsewhere)": colours + recon.albedo_uv * (1 - visible),
            "completion (photo_texture)": model.photo_texture(flat, recon),
        }
        no_mirror = torch.full_like(model._mirror_texels, -1)
        rules["completion without the mirror (ablation)"] = tex.complete_texture(
            colours, confidence, recon.albedo_uv, no_mirror, model.renderer.uv.mask
        )
    return recon, flat, rules, confidence


def pair_errors(model, batch: dict) -> dict[str, dict[str, list[float]]]:
    """{rule: {"seen": [...], "unseen": [...]}} mean absolute errors (0–255) of every ordered pair."""
    from vitdeca.render.uv import sample_uv_map

    recon, flat, rules, confidence = textures(model, batch)
    grid, alpha = recon.render.uv_grid, recon.alpha
    errors: dict[str, dict[str, list[float]]] = {rule: {"seen": [], "unseen": []} for rule in rules}
    n = len(flat)
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            face = (batch["masks"][b, 0] > 0) & (alpha[b, 0] > 0)
            seen = sample_uv_map(confidence[a : a + 1], grid[b : b + 1])[0, 0] >= 0.5
            for rule, texture in rules.items():
                shown = sample_uv_map(texture[a : a + 1], grid[b : b + 1])[0]
                diff = 255.0 * (shown - flat[b]).abs().mean(0)
                for part, where in (("seen", face & seen), ("unseen", face & ~seen)):
                    if int(where.sum()) >= 20:
                        errors[rule][part].append(float(diff[where].mean()))
    return errors


def bootstrap_difference(
    per_subject: dict, part: str, rules: list[str], seed: int = 0
) -> tuple[float, float]:
    """95 % interval of mean(rule 1) − mean(rule 0) over resampled subjects."""
    subjects = [s for s in per_subject if per_subject[s][rules[0]][part]]
    rng = np.random.default_rng(seed)
    means = {s: [np.mean(per_subject[s][r][part]) for r in rules] for s in subjects}
    draws = []
    for _ in range(BOOTSTRAP):
        chosen = [subjects[i] for i in rng.integers(0, len(subjects), len(subjects))]
        draws.append(np.mean([means[s][1] - means[s][0] for s in chosen]))
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def report(per_subject: dict, args: argparse.Namespace) -> str:
    rules = list(next(iter(per_subject.values())))
    pairs = sum(len(v[rules[0]]["seen"]) for v in per_subject.values())
    lines = [
        "# Photo textures in new views: DECA's rule vs completion",
        "",
        f"`python benchmarks/bench_texture.py --synth {args.synth}`; {platform.machine()}, torch "
        f"{torch.__version__}. {len(per_subject)} subjects, {pairs} ordered image pairs (true codes; the "
        "texture of image A rendered in image B's pose vs image B, both de-shaded (clamped to [0, 1]), at "
        "the model's image size; "
        f"albedo fallback: model `{args.model}`'s mean albedo). Mean absolute error, 0–255, over B's face "
        "pixels; accuracy only (no timings).",
        "",
        "| rule | surface A saw squarely | surface hidden from A or grazing |",
        "|---|---|---|",
    ]
    for rule in rules:
        cells = []
        for part in ("seen", "unseen"):
            values = [v for s in per_subject.values() for v in s[rule][part]]
            cells.append(f"{np.mean(values):.2f} (median {np.median(values):.2f}, n = {len(values)})")
        lines.append(f"| {rule} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "Difference to DECA's rule, mean over subjects [95 % bootstrap interval over subjects]:",
        "",
    ]
    for rule in rules[1:]:
        for part in ("seen", "unseen"):
            subjects = [s for s in per_subject.values() if s[rule][part]]
            diff = np.mean([np.mean(s[rule][part]) - np.mean(s[rules[0]][part]) for s in subjects])
            low, high = bootstrap_difference(per_subject, part, [rules[0], rule])
            lines.append(f"- {rule}, {part}: {diff:+.2f} [{low:+.2f}, {high:+.2f}]")
    return "\n".join(lines) + "\n"


def main() -> None:
    from vitdeca.pipeline import Reconstructor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synth", required=True, help="a `vitdeca synth` folder, several images per subject")
    parser.add_argument("--model", default="vitdeca-vits14", help="whose albedo is the fallback (zero code)")
    args = parser.parse_args()
    model = Reconstructor.from_pretrained(
        args.model, device="cpu", detail=False, method="regress"
    ).model.eval()
    batches = subject_batches(Path(args.synth), model.config.image_size)
    per_subject = {}
    for subject, batch in batches.items():
        per_subject[subject] = pair_errors(model, batch)
        print(
            subject,
            {r: f"{np.mean(v['unseen']):.2f}" for r, v in per_subject[subject].items() if v["unseen"]},
        )
    text = report(per_subject, args)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
