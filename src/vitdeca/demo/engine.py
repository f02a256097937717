"""The demo's handler logic, free of Gradio: one uploaded photo or video in, the files of
``vitdeca reconstruct`` out, plus what the page shows (vis panel, GLB, depth, ARKit chart, zip).

Every reconstruction goes through the CLI's own engine (:class:`~vitdeca.pipeline.batch.BatchRunner` over
a :class:`~vitdeca.pipeline.Reconstructor`), so the demo's files are the command's files.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitdeca import media
from vitdeca.demo import charts
from vitdeca.errors import VitdecaError
from vitdeca.storage import atomic_path
from vitdeca.wording import counted

log = logging.getLogger(__name__)

METHOD_HELP = {
    "regress": "the trained encoder's codes (fast)",
    "refine": "the encoder's codes refined by fitting",
    "fit": "per-image fitting, no weights needed",
}
DEMO_SAVE = ("+glb", "+arkit", "+avatar")  # on top of reconstruct's defaults, when the pipeline has them
DEFAULT_MAX_UPLOAD_MB = 25.0
MB = 1 << 20  # upload sizes are counted in MiB, as Gradio counts its max_file_size
DEFAULT_MAX_FRAMES = 120
KEEP_JOBS = 16  # finished jobs kept on disk (their files are linked from the page)
KEEP_RECONSTRUCTORS = 3  # models kept in memory (one per method and detail setting)

Progress = Callable[[float, str], None]


@dataclass
class DemoResult:
    """What one run shows. Paths are files in the job folder; ``message`` is the one-line status."""

    name: str
    kind: str
    method: str
    message: str
    seconds: float
    vis: Path | None = None
    vis_video: Path | None = None
    model: Path | None = None
    depth: Path | None = None
    arkit_chart: Path | None = None
    arkit_note: str = ""
    zip: Path | None = None
    files: list[Path] = field(default_factory=list)


def demo_save() -> frozenset[str]:
    """reconstruct's default outputs plus the GLB, and ARKit weights / the avatar when this version of
    the pipeline can write them."""
    from vitdeca.pipeline.batch import SAVE_CHOICES, parse_save

    return parse_save([s for s in DEMO_SAVE if s.lstrip("+") in SAVE_CHOICES])


def safe_name(name: str) -> str:
    """An upload's file name reduced to ``[A-Za-z0-9._-]`` (no folders, no leading dot)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip("._")
    return base[:120] or "upload"


class DemoEngine:
    """Runs the demo's reconstructions: one job folder per request under ``workdir``.

    ``checkpoint``: a trained model (zoo name or path) or None (fitting only). Reconstructors are built
    on first use per (method, detail) by :meth:`Reconstructor.from_pretrained`, as ``vitdeca reconstruct
    --method`` builds them, at ``precision`` (``--precision``); ``factory(method, detail)`` replaces that
    (tests).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        *,
        device: str = "auto",
        detector: str = "dlib",
        precision: str = "fp32",
        workdir: str | os.PathLike | None = None,
        max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
        max_frames: int = DEFAULT_MAX_FRAMES,
        factory: Callable[[str, bool], object] | None = None,
    ) -> None:
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        self.device, self.detector, self.precision = device, detector, precision
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="vitdeca-demo-")).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.max_upload_mb, self.max_frames = float(max_upload_mb), int(max_frames)
        self.factory = factory or self._build
        self._recs: dict[tuple[str, bool], object] = {}
        self._lock = threading.Lock()
        self._jobs = 0

    # ------------------------------------------------------------------------------ reconstructors
    @property
    def methods(self) -> tuple[str, ...]:
        """The methods this engine offers: all three with a model, ``fit`` only without."""
        from vitdeca.pipeline.reconstructor import METHODS

        return METHODS if self.checkpoint else ("fit",)

    @property
    def default_method(self) -> str:
        """``vitdeca reconstruct``'s default: refine with a model, fit without."""
        return "refine" if self.checkpoint else "fit"

    def reconstructor(self, method: str, detail: bool = True):
        """The reconstructor of ``method`` (the :data:`KEEP_RECONSTRUCTORS` most recently used are kept);
        VitdecaError for a method this engine lacks."""
        if method not in self.methods:
            need = " (it needs --checkpoint)" if method in METHOD_HELP else ""
            choices = ", ".join(self.methods)
            raise VitdecaError(f"method {method!r} is not available{need}; choose from {choices}")
        key = (method, bool(detail) and self.checkpoint is not None)
        rec = self._recs.pop(key) if key in self._recs else self.factory(*key)
        self._recs[key] = rec  # most recent last
        while len(self._recs) > KEEP_RECONSTRUCTORS:
            self._recs.pop(next(iter(self._recs)))
        return rec

    def _build(self, method: str, detail: bool):
        """A :class:`~vitdeca.pipeline.Reconstructor` as ``vitdeca reconstruct --method`` builds it."""
        from vitdeca.pipeline import Reconstructor

        return Reconstructor.from_pretrained(
            self.checkpoint,
            device=self.device,
            detector=self.detector,
            detail=detail,
            method=method,
            precision=self.precision,
        )

    def warm_up(self, sample: str | os.PathLike | None = None) -> None:
        """Build the default method's reconstructor now (head model, weights) and, given a ``sample``
        photo, reconstruct it once (detector, compiled kernels, first-call costs), deleting the job."""
        self.reconstructor(self.default_method)
        if sample is not None:
            result = self.run(sample)
            if result.zip is not None:
                shutil.rmtree(result.zip.parent, ignore_errors=True)

    # ------------------------------------------------------------------------------------- running
    def check_upload(self, source: str | os.PathLike | None) -> Path:
        """The uploaded file, or VitdecaError (none given, missing, empty, over the size limit)."""
        if source is None or not os.fspath(source):
            raise VitdecaError(
                "no input: upload a photo or a video, take a webcam snapshot or pick an example"
            )
        path = Path(source)
        name = safe_name(path.name)
        if not path.is_file():
            raise VitdecaError(f"{name}: no such file")
        size_mb = path.stat().st_size / MB
        if size_mb == 0:
            raise VitdecaError(f"{name}: the file is empty")
        if size_mb > self.max_upload_mb:
            limit = f"{self.max_upload_mb:g} MB"
            raise VitdecaError(f"{name}: {size_mb:.3g} MB is over the demo's upload limit of {limit}")
        return path

    def run(
        self,
        source: str | os.PathLike | None,
        method: str | None = None,
        detail: bool = True,
        all_faces: bool = False,
        progress: Progress | None = None,
    ) -> DemoResult:
        """Reconstruct the uploaded ``source`` like ``vitdeca reconstruct`` would; VitdecaError (one line,
        naming the file) when it cannot be read or processed. ``progress(fraction, text)`` is called as
        the work advances (per frame for videos)."""
        from vitdeca.pipeline.batch import BatchRunner, RunOptions, drop_unsupported

        method = method or self.default_method
        path = self.check_upload(source)
        start = time.perf_counter()
        report = progress or (lambda fraction, text: None)
        with self._lock:
            rec = self.reconstructor(method, detail)
            job = self._new_job()
            upload = job / "inputs" / safe_name(path.name)
            upload.parent.mkdir(parents=True)
            shutil.copyfile(path, upload)
            options = RunOptions(
                save=demo_save(), all_faces=all_faces, max_frames=self.max_frames, progress=False
            )
            if hasattr(rec, "model"):
                options = drop_unsupported(options, rec.model.head)
            report(0.0, "starting")
            summary = BatchRunner(_Reporting(rec, report), job / "out", options).run([upload])
        result = self._collect(job, upload, summary, method)
        result.seconds = time.perf_counter() - start
        report(1.0, "done")
        return result

    def _new_job(self) -> Path:
        """A fresh job folder (named by time, so names sort by age); the oldest beyond :data:`KEEP_JOBS`
        (counting the new one) are deleted."""
        self._jobs += 1
        stamp = time.strftime("%Y%m%d-%H%M%S")
        job = Path(tempfile.mkdtemp(prefix=f"job-{stamp}-{self._jobs:05d}-", dir=self.workdir))
        old = sorted(p for p in self.workdir.glob("job-*") if p.is_dir() and p != job)
        for stale in old[: max(0, len(old) + 1 - KEEP_JOBS)]:
            shutil.rmtree(stale, ignore_errors=True)
        return job

    def _collect(self, job: Path, upload: Path, summary, method: str) -> DemoResult:
        """Turn the batch summary into what the page shows; VitdecaError when the input failed."""
        name, out = upload.name, job / "out"
        records = summary.records
        failed = [r for r in records if r.status == "failed"]
        ok = [r for r in records if r.status == "ok" and r.outputs]
        if failed and not ok:
            raise VitdecaError(_shown(failed[0].message, upload))
        kind = media.media_kind(upload)
        if not ok:
            message = records[0].message if records and records[0].message else "no face found"
            return DemoResult(name, kind, method, f"{name}: {message}", 0.0)
        files = [out / f for r in ok for f in r.outputs]
        result = DemoResult(name, kind, method, _status(name, kind, ok, failed, upload), 0.0, files=files)
        self._media(result, job, files)
        result.zip = _zip(out, job / f"{upload.stem}_vitdeca.zip")
        return result

    def _media(self, result: DemoResult, job: Path, files: list[Path]) -> None:
        """Fill the vis, model, depth and ARKit fields from the written files."""
        result.vis_video = _first(files, "_vis.mp4")
        result.model = _first(files, "_avatar.glb") or _first(files, ".glb")
        result.depth = _first(files, "_depth.png")
        vis = [f for f in files if f.name.endswith("_vis.png")]
        if vis:
            result.vis = _stack_png(vis, job / "vis_all.png") if len(vis) > 1 else vis[0]
        result.arkit_chart, result.arkit_note = _arkit_chart(files, job)


class _Reporting:
    """A reconstructor that reports progress: the batch runner's protocol (``prepare``,
    ``reconstruct_crops``, ``iter_video``, ``render_in_image``) passed through to ``rec``."""

    def __init__(self, rec, report: Progress) -> None:
        self.rec, self.report = rec, report

    def prepare(self, path, all_faces: bool = False):
        self.report(0.05, "detecting faces")
        return self.rec.prepare(path, all_faces=all_faces)

    def reconstruct_crops(self, prepared):
        fitting = getattr(self.rec, "fit_config", None) is not None
        self.report(0.2, "fitting the head model" if fitting else "regressing the codes")
        out = self.rec.reconstruct_crops(prepared)
        self.report(0.85, "writing files")
        return out

    def iter_video(self, video, smooth: bool = True, max_frames: int | None = None):
        counts = [n for n in (video.n_frames, max_frames) if n]
        total = min(counts) if counts else None
        for frame in self.rec.iter_video(video, smooth=smooth, max_frames=max_frames):
            done = frame.index + 1
            fraction = 0.95 * done / total if total else 0.5
            self.report(min(fraction, 0.95), f"frame {done}" + (f"/{total}" if total else ""))
            yield frame

    def render_in_image(self, face, image_shape, scale: float = 1.0):
        return self.rec.render_in_image(face, image_shape, scale)


def _shown(message: str, upload: Path) -> str:
    """The CLI's line for a failed input (``<path>: <message>``), with the upload's name as the path."""
    text = message.replace(str(upload.parent) + os.sep, "").replace(str(upload), upload.name)
    return text if upload.name in text else f"{upload.name}: {text}"


def _status(name: str, kind: str, ok: list, failed: list, upload: Path) -> str:
    if kind == "video":
        return f"{name}: {ok[0].message}"
    n = len(ok)
    line = f"{name}: {counted(n, 'face')} reconstructed"
    if failed:
        line += f"; {len(failed)} failed ({_shown(failed[0].message, upload)})"
    return line


def _first(files: list[Path], suffix: str) -> Path | None:
    return next((f for f in files if f.name.endswith(suffix)), None)


def _stack_png(paths: list[Path], target: Path) -> Path:
    """The vis panels of several faces stacked top to bottom (padded to one width) into ``target``."""
    from vitdeca.faces.image_io import read_image

    images = [read_image(p) for p in paths]
    width = max(i.shape[1] for i in images)
    rows = [np.pad(i, ((0, 0), (0, width - i.shape[1]), (0, 0)), constant_values=255) for i in images]
    return media.save_png(target, np.concatenate(rows, 0))


def _arkit_chart(files: list[Path], job: Path) -> tuple[Path | None, str]:
    """The ARKit chart (bars per face for photos, curves for a video) and a note; no chart, and a note
    saying why, when the pipeline wrote no ARKit file (e.g. a head model without ARKit semantics)."""
    csv_file = _first(files, "_arkit.csv")
    if csv_file is not None:
        curves = charts.read_arkit_csv(csv_file)
        note = f"ARKit weights over {len(curves.frames)} frames: the {charts.N_CURVES} that move most"
        return charts.curve_chart(curves, job / "arkit_curves.png"), note
    jsons = [f for f in files if f.name.endswith("_arkit.json")]
    if not jsons:
        return None, "ARKit weights: not available (this vitdeca or head model writes no ARKit file)"
    faces = [(f"face {k}", charts.read_arkit_json(f)) for k, f in enumerate(jsons[:4])]
    note = "ARKit blendshape weights" + (f" (first 4 of {len(jsons)} faces)" if len(jsons) > 4 else "")
    return charts.bar_chart(faces, job / "arkit_bars.png"), note


def _zip(folder: Path, target: Path) -> Path:
    """Every file under ``folder`` (relative names) in the zip ``target``, written atomically."""
    with atomic_path(target, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(folder).as_posix())
    return target
