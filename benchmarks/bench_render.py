"""Renderer cost on CPU as a fraction of a ResNet50 forward pass, and its peak memory.

Claim measured (batch 8, 224x224, CPU): rasterise + shade (``MeshRenderer``: z-buffer, barycentrics,
UV albedo, SH shading) forward of the textured image, forward of every image (textured, normals, shading,
albedo, shape render, UV grid: the render makes each when first read), and forward+backward of
sum(image · fixed random weights) w.r.t. vertices, camera, albedo and light (their ``.grad`` set to
None before each, as ``zero_grad(set_to_none=True)`` leaves a training step's; until session 17 they
accumulated), on
1. a 10k-triangle UV sphere,
2. the ICT-FaceKit head model as vitdeca loads it, and its face region (faces inside ``face_mask``),
as a ratio to a torchvision ResNet50 forward (weights=None, eval, no_grad) on the same batch, timed in the
same process with the runs interleaved. Target: forward+backward <= 0.10 x ResNet50 forward.
Peak memory: increase of the peak resident set size (Linux VmHWM, reset through /proc/self/clear_refs) during
one forward+backward, measured in a fresh subprocess per mesh after a small warm-up. Target <= 300 MB.

Back faces are culled where the model culls them (``--culling auto``: meshes whose faces point outward,
:func:`vitdeca.render.rasterize.faces_point_outward`; ``off`` for the comparison). The visibility
pass runs on the numba backend (the CPU default) and, for comparison, on the torch backend
(``--backends numba,torch``: what CUDA uses, here on the CPU); with ``--threads 1,2`` one table per thread
count, the numba kernels following torch's thread count (issue 15's target row: full ICT head, 2 threads).

Usage: ``python benchmarks/bench_render.py [--repeats 7] [--batch 8] [--no-ict] [--threads 1,2]
[--backends numba,torch] [--culling auto,off]`` (ICT needs ``$VITDECA_ICT_FACEKIT`` or a converted
model in ``$VITDECA_HOME``).
Check that it runs: ``--repeats 1 --batch 1 --no-ict --backends numba,torch --no-memory --dry-run``.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vitdeca.storage import atomic_write_bytes
from vitdeca.weights import read_weights

RESULTS = Path(__file__).resolve().parent / "results" / "render.md"
SIZE, UV_SIZE = 224, 256
ALL_IMAGES = ("image", "normal_image", "shading", "albedo_image", "shape_image", "uv_grid")


def uv_sphere(rings: int, segments: int) -> dict[str, torch.Tensor]:
    """A unit UV sphere with 2·rings·segments triangles, camera framing it."""
    theta = torch.linspace(0, math.pi, rings + 1)
    phi = torch.linspace(0, 2 * math.pi, segments + 1)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    vertices = torch.stack([torch.sin(t) * torch.sin(p), torch.cos(t), torch.sin(t) * torch.cos(p)], -1)
    n = segments + 1
    r, s = torch.meshgrid(torch.arange(rings), torch.arange(segments), indexing="ij")
    q = (r * n + s).reshape(-1)
    faces = torch.cat([torch.stack([q, q + n, q + 1], 1), torch.stack([q + 1, q + n, q + n + 1], 1)])
    uv = torch.stack([p / (2 * math.pi), 1 - t / math.pi], -1).reshape(-1, 2)
    return {
        "vertices": vertices.reshape(-1, 3),
        "faces": faces,
        "uv_coords": uv,
        "uv_faces": faces,
        "camera": torch.tensor([0.85, 0.0, 0.0]),
    }


def ict_meshes() -> dict[str, dict[str, torch.Tensor]]:
    """The ICT head model mesh and its face region (faces whose three vertices are in ``face_mask``)."""
    from vitdeca.head import load_head_model

    head = load_head_model("ict")
    vertices = head.template_vertices.detach().float()
    common = {
        "vertices": vertices,
        "uv_coords": head.uv_coords.float(),
        "camera": torch.tensor([0.075, 0.0, 2.0]),
    }
    region = head.face_mask[head.faces].all(-1)
    return {
        "ICT head model": {**common, "faces": head.faces, "uv_faces": head.uv_faces},
        "ICT face region": {**common, "faces": head.faces[region], "uv_faces": head.uv_faces[region]},
    }


def culls(mesh: dict[str, torch.Tensor], culling: str) -> bool:
    """Whether the render of ``mesh`` culls back faces: ``culling`` "auto" as :class:`vitdeca.model.DecaModel`
    decides it (:func:`~vitdeca.render.rasterize.faces_point_outward`), "off" never."""
    from vitdeca.render.rasterize import faces_point_outward

    return culling == "auto" and faces_point_outward(mesh["vertices"], mesh["faces"])


def make_step(mesh: dict[str, torch.Tensor], batch: int, backend: str = "auto", culling: str = "auto"):
    """Closures of one render of ``batch`` copies of ``mesh``: forward (reading the image), forward (reading
    every image) and forward+backward, with the rasteriser's visibility ``backend`` and back faces culled
    as ``culling`` says (:func:`culls`)."""
    from vitdeca.render import MeshRenderer
    from vitdeca.render import renderer as renderer_module
    from vitdeca.render.rasterize import rasterize

    torch.manual_seed(0)
    renderer = MeshRenderer(
        mesh["faces"], mesh["uv_coords"], mesh["uv_faces"], SIZE, UV_SIZE, cull_backfaces=culls(mesh, culling)
    )
    vertices = mesh["vertices"][None].repeat(batch, 1, 1).requires_grad_(True)
    camera = mesh["camera"][None].repeat(batch, 1).requires_grad_(True)
    albedo = torch.rand(batch, 3, UV_SIZE, UV_SIZE, requires_grad=True)
    light = torch.zeros(batch, 9, 3)
    light[:, 0] = 3.0
    light.requires_grad_(True)
    upstream = torch.rand(batch, 3, SIZE, SIZE)  # a fixed random dL/d image

    def forward():
        saved = renderer_module.rasterize
        renderer_module.rasterize = functools.partial(rasterize, backend=backend)
        try:
            return renderer(vertices, camera, albedo, light)
        finally:
            renderer_module.rasterize = saved

    def forward_image():  # what a loss reads: the render makes each image when first read
        return forward().image

    def forward_all():  # every image, as reconstruct's outputs read them
        out = forward()
        return [getattr(out, name) for name in ALL_IMAGES]

    def forward_backward():  # as a training step after zero_grad(set_to_none=True): nothing accumulates
        for leaf in (vertices, camera, albedo, light):
            leaf.grad = None
        (forward().image * upstream).sum().backward()

    return forward_image, forward_all, forward_backward


def peak_memory_mb(mesh: dict[str, torch.Tensor], batch: int) -> float:
    """Peak RSS increase (MB) of one forward+backward, measured in a fresh subprocess."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mesh.pt"
        torch.save(mesh, path)
        result = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(path), "--batch", str(batch)],
            capture_output=True,
            text=True,
            check=True,
        )
    return float(result.stdout.strip().splitlines()[-1])


def _memory_child(path: str, batch: int) -> None:
    mesh = read_weights(path, "benchmark mesh")  # written by this script just before
    *_, warm_step = make_step(mesh, 1)
    warm_step()  # compile/load numba, first torch kernels
    *_, step = make_step(mesh, batch)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _status_kb("VmRSS")
        step()
        peak = _status_kb("VmHWM")
    except OSError:  # not Linux: fall back to the process-lifetime peak
        import resource

        before = 0
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((peak - before) / 1024)


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-ict", action="store_true")
    parser.add_argument(
        "--threads", default="0", help="comma-separated torch thread counts, one table each (0: default)"
    )
    parser.add_argument(
        "--backends", default="numba", help="comma-separated visibility backends (numba,torch)"
    )
    parser.add_argument(
        "--culling", default="auto", help="comma-separated back-face culling (auto: as the model; off)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--dry-run", action="store_true", help="print only, do not write the results file")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        _memory_child(args.memory_child, args.batch)
        return

    meshes = {"UV sphere (10k triangles)": uv_sphere(50, 100)}
    ict_note = ""
    if not args.no_ict:
        try:
            meshes.update(ict_meshes())
        except Exception as exc:  # noqa: BLE001 - report, keep benchmarking the synthetic mesh
            ict_note = f"ICT model unavailable ({exc}); only the synthetic mesh was measured."
    nan = float("nan")
    memory = {
        name: nan if args.no_memory else peak_memory_mb(mesh, args.batch) for name, mesh in meshes.items()
    }
    backends = args.backends.split(",")
    default_threads = torch.get_num_threads()
    sections = [
        f"# Renderer benchmark (CPU, batch {args.batch}, {SIZE}x{SIZE}, UV maps {UV_SIZE}x{UV_SIZE}, "
        f"median of {args.repeats} interleaved runs)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}. Other jobs on the machine make absolute times "
        "noisy; ratios compare runs interleaved in the same process, after one warm-up run each. On an "
        "oversubscribed CPU torch's multi-threaded OpenMP regions stall on descheduled workers (compare "
        "ResNet50 across the thread counts); the 1-thread table is then the fairer comparison.",
        "",
        "Peak MB: increase of the peak resident set size (Linux VmHWM, reset through /proc/self/clear_refs) "
        "during one forward+backward of the batch, in a fresh process, with the inputs already allocated.",
        *([ict_note] if ict_note else []),
    ]
    for threads in [int(t) or default_threads for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        rows = [(n, b, c) for n in meshes for b in backends for c in args.culling.split(",")]
        sections += ["", *_time_section(meshes, memory, args.batch, args.repeats, rows)]
    table = "\n".join(sections) + "\n"
    print(table)
    if not args.dry_run:
        atomic_write_bytes(RESULTS, table.encode())


def _time_section(meshes, memory, batch: int, repeats: int, rows: list[tuple[str, str, str]]) -> list[str]:
    """Interleaved timing of ResNet50 and each (mesh, visibility backend, culling) of ``rows``; a Markdown
    section."""
    import torchvision

    resnet = torchvision.models.resnet50(weights=None).eval()
    images = torch.rand(batch, 3, SIZE, SIZE)

    def resnet_forward():
        with torch.no_grad():
            resnet(images)

    tasks = {"resnet50": resnet_forward}
    for name, backend, culling in rows:
        keys = [f"{name}|{backend}|{culling}|{part}" for part in ("fwd", "all", "step")]
        for key, fn in zip(keys, make_step(meshes[name], batch, backend, culling), strict=True):
            tasks[key] = fn
    load_before = os.getloadavg()[0]
    times = {key: [] for key in tasks}
    for fn in tasks.values():  # warm-up
        fn()
    for _ in range(repeats):  # interleaved, so load changes hit all rows alike
        for key, fn in tasks.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    median = {key: statistics.median(values) for key, values in times.items()}
    base = median["resnet50"]
    lines = [
        f"## torch threads: {torch.get_num_threads()}; 1-min load average {load_before:.1f} before / "
        f"{os.getloadavg()[0]:.1f} after",
        "",
        f"ResNet50 forward (weights=None, eval, no_grad): {1000 * base:.0f} ms.",
        "",
        "| mesh | visibility | vertices | triangles | forward ms (image) | forward ms (all images) "
        "| fwd+bwd ms | forward / ResNet50 | fwd+bwd / ResNet50 | peak MB (numba) "
        "| target (≤ 0.10, ≤ 300 MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, backend, culling in rows:
        mesh = meshes[name]
        fwd, every, step = (median[f"{name}|{backend}|{culling}|{part}"] for part in ("fwd", "all", "step"))
        visibility = backend + (", back faces culled" if culls(mesh, culling) else "")
        verdict = "met" if step / base <= 0.10 and not memory[name] > 300 else "MISSED"
        size = f"{mesh['vertices'].shape[0]} | {mesh['faces'].shape[0]}"
        lines.append(
            f"| {name} | {visibility} | {size} | {1000 * fwd:.1f} | {1000 * every:.1f} | {1000 * step:.1f} "
            f"| {fwd / base:.3f} | {step / base:.3f} | {memory[name]:.0f} | {verdict} |"
        )
    return lines


if __name__ == "__main__":
    main()
