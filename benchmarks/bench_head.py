"""Head-model forward pass on the CPU: ICT-FaceKit and a FLAME-format model (random content).

Claim: batch 64 takes ≤ 50 ms per forward for both models.

For each model and batch size (1, 64) it reports the median ms per forward (``torch.no_grad``) over
``--repeats`` runs after a warm-up, the peak extra resident memory of one forward (measured in a fresh
child process: Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``), and the ratio to a
baseline measured in the same run: for ICT, ICT-FaceKit's own way of deforming the mesh (a Python loop
adding ``weight × mode`` per shape mode); for FLAME, ``smplx``'s FLAME layer on the same file.

Usage: ``python benchmarks/bench_head.py [--repeats 20]``. ICT comes from ``$VITDECA_HOME`` (installed from
``$VITDECA_ICT_FACEKIT`` or ``../shared/assets/ICT-FaceKit-master.zip`` when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from inputs import shared_dir
from vitdeca.head import load_head_model
from vitdeca.head.synthetic import (
    random_flame_arrays,
    random_landmark_embedding,
    write_flame_pickle,
    write_ringnet_embedding,
)
from vitdeca.storage import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results" / "head.md"
BATCHES = (1, 64)


def ict_source() -> str | None:
    shared = shared_dir()
    archive = shared / "assets" / "ICT-FaceKit-master.zip"
    return os.environ.get("VITDECA_ICT_FACEKIT") or (str(archive) if archive.exists() else None)


def flame_folder(root: Path) -> Path:
    """Write a random FLAME-format model (official layout) plus the smplx copy into ``root``."""
    arrays, emb = random_flame_arrays(seed=0), random_landmark_embedding(seed=1)
    write_flame_pickle(root / "generic_model.pkl", arrays)
    write_flame_pickle(root / "FLAME_NEUTRAL.pkl", arrays, chumpy=False)
    write_ringnet_embedding(root, emb)
    return root


def build(model: str, root: Path):
    """(our head model, baseline callable(codes) or None)."""
    if model == "ict":
        head = load_head_model("ict", source=ict_source())
        return head, lambda s, e, p: _ict_loop(head, s, e)
    head = load_head_model("flame", path=root / "generic_model.pkl")
    import smplx

    ref = smplx.FLAME(model_path=str(root), num_betas=100, num_expression_coeffs=50, use_face_contour=True)

    def baseline(s, e, p):
        z = p.new_zeros(p.shape[0], 3)
        return ref(
            betas=s,
            expression=e,
            global_orient=p[:, :3],
            jaw_pose=p[:, 3:],
            neck_pose=z,
            leye_pose=z,
            reye_pose=z,
        )

    return head, baseline


def _ict_loop(head, shape, expression):
    """ICT-FaceKit's reference deformation (Scripts/ict_face_model.py): add weight × mode, mode by mode."""
    coeffs = torch.cat([shape, expression], dim=1)
    verts = head.template.reshape(1, -1).repeat(coeffs.shape[0], 1)
    for k in range(coeffs.shape[1]):
        verts += coeffs[:, k : k + 1] * head.basis[k]
    return verts.view(coeffs.shape[0], -1, 3)


def codes(head, batch: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(batch)
    pose = torch.randn(batch, head.n_pose, generator=g) * 0.2
    return (
        torch.randn(batch, head.n_shape, generator=g),
        torch.rand(batch, head.n_expression, generator=g),
        pose,
    )


def timings(fn, args, repeats: int) -> tuple[float, float, float]:
    """(median wall ms, min wall ms, median CPU ms of all threads) per call, after one warm-up call."""
    with torch.no_grad():
        fn(*args)
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(*args)
            wall.append((time.perf_counter() - start) * 1e3)
            cpu.append((time.process_time() - start_cpu) * 1e3)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def child_peak_mb(model: str, root: Path, batch: int) -> float:
    """Run in a fresh process: build the model, reset the peak RSS, run one forward, report the extra peak."""
    head, _ = build(model, root)
    args = codes(head, batch)
    status = Path("/proc/self/status")
    if not status.exists():
        return float("nan")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
    before = int(fields["VmRSS"].split()[0])
    with torch.no_grad():
        head(*args)
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
    return (int(fields["VmHWM"].split()[0]) - before) / 1024


def peak_mb(model: str, root: Path, batch: int) -> float:
    cmd = [sys.executable, __file__, "--child", model, str(root), str(batch)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_mb"])


def table(repeats: int, root: Path, thread_counts: list[int]) -> str:
    rows = [
        "| model | threads | batch | wall ms (median) | wall ms (min) | CPU ms (median) "
        "| baseline wall ms (median) | speed-up (median wall) | peak extra MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model in ("ict", "flame"):
        head, baseline = build(model, root)
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for batch in BATCHES:
                args = codes(head, batch)
                median, best, cpu = timings(head, args, repeats)
                base = timings(baseline, args, max(3, repeats // 4))[0]
                name = f"{model.upper()} ({head.n_vertices} vertices)"
                peak = peak_mb(model, root, batch)
                cells = [
                    name,
                    threads,
                    batch,
                    f"{median:.2f}",
                    f"{best:.2f}",
                    f"{cpu:.2f}",
                    f"{base:.2f}",
                    f"{base / median:.1f}×",
                    f"{peak:.1f}",
                ]
                rows.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--threads", type=int, nargs="+", help="torch thread counts (default: 1 and all cores)"
    )
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "ROOT", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, root, batch = args.child
        print(json.dumps({"peak_mb": child_peak_mb(model, Path(root), int(batch))}))
        return
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        threads = args.threads or sorted({1, torch.get_num_threads()})
        body = table(args.repeats, flame_folder(Path(tmp)), threads)
    baselines = (
        "Baselines: ICT = ICT-FaceKit's per-mode Python loop (blend shapes only, no rotation or "
        "landmarks); FLAME = smplx's FLAME layer with dynamic contour landmarks, same file."
    )
    notes = (
        f"{args.repeats} runs after a warm-up (baseline: fewer runs), `torch.no_grad`, "
        f"torch {torch.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs. CPU ms sums all threads. Wall times include any other jobs on the machine "
        f"(load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after), so "
        "the minimum is the least disturbed run. "
        "Peak extra MB: resident-memory high-water mark of one forward in a fresh process. "
        "Target: batch 64 ≤ 50 ms for both models."
    )
    text = f"# Head-model forward (CPU)\n\n{body}\n\n{baselines}\n\n{notes}\n"
    print(text)
    atomic_write_bytes(RESULTS, text.encode())


if __name__ == "__main__":
    main()
