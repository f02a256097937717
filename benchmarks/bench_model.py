"""Benchmark: full ``decode`` time as a fraction of ``encode`` time (CPU, batch 8, 224×224, ICT head).

Targets (issue 4): decode ≤ 0.15 × encode for the coarse model, ≤ 0.30 × encode with the detail branch.
Run: ``python benchmarks/bench_model.py [--encoder vit_small_patch16_224] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from timing import median_seconds
from vitdeca.model import DecaModel, ModelConfig
from vitdeca.storage import atomic_write_bytes

RESULTS = Path(__file__).parent / "results" / "model.md"


def measure(encoder: str, detail: bool, batch: int, repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = DecaModel(ModelConfig(encoder=encoder, detail=detail, dropkey=0.0)).eval()
    images = torch.rand(batch, 3, 224, 224)
    with torch.no_grad():
        codes = model.encode(images)
        encode = median_seconds(lambda: model.encode(images), repeats)
        # the render makes its images when read: read the two reconstruct keeps
        decode = median_seconds(lambda: model.decode(codes, detail=detail).renders(), repeats)
    return encode, decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoders", nargs="+", default=["vit_small_patch16_224", "vit_base_patch16_224"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = [
        "| encoder | branch | encode s/batch | decode s/batch | decode / encode | target |",
        "|---|---|---|---|---|---|",
    ]
    for encoder in args.encoders:
        for detail, target in ((False, 0.15), (True, 0.30)):
            encode, decode = measure(encoder, detail, args.batch, args.repeats)
            branch = "coarse + detail" if detail else "coarse"
            rows.append(
                f"| {encoder} | {branch} | {encode:.3f} | {decode:.3f} | {decode / encode:.3f} | ≤ {target} |"
            )
            print(rows[-1], flush=True)
    text = (
        f"# decode vs encode (CPU, batch {args.batch}, 224×224, ICT head, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats})\n\n" + "\n".join(rows) + "\n\n"
        "encode = coarse encoder (+ detail encoder for 'coarse + detail'); "
        "decode = head model, albedo, render, "
        "landmark projection (+ detail decoder, detail normals, detail shading).\n"
    )
    atomic_write_bytes(RESULTS, text.encode())
    print(text)


if __name__ == "__main__":
    main()
