"""The batch runner behind ``vitdeca reconstruct``: many inputs in, files and ``summary.json`` out.

Each input is isolated (a bad file becomes a ``failed`` record, never a traceback); the per-face files
are written under ``OUT/<name>/`` (``<name>_<k>`` file names for extra faces; names unique per input,
see :mod:`vitdeca.pipeline.outdir`) as one transaction per input, and every input gets a record in
``OUT/summary.json``. A re-run skips only inputs whose folder was completed; partial ones are redone.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitdeca import media
from vitdeca.errors import VitdecaError, first_line
from vitdeca.pipeline import animation
from vitdeca.pipeline.outdir import OutputFolder, exclude_output_folder, output_names
from vitdeca.pipeline.results import VIDEO_VIS_HEIGHT, FaceResult, VideoFrame
from vitdeca.pipeline.shard import Shard, rank_summary_name
from vitdeca.storage import atomic_path, atomic_write_bytes
from vitdeca.wording import counted

log = logging.getLogger(__name__)

SAVE_CHOICES = (
    "obj", "ply", "glb", "texture", "depth", "landmarks", "vis", "codes", "now", "arkit", "avatar",
)  # fmt: skip
ARKIT_OUTPUTS = ("arkit", "avatar")  # need a head model with ARKit semantics (HeadModel.blendshape_names)
DEFAULT_SAVE = ("obj", "texture", "depth", "landmarks", "vis", "codes")
STATUSES = ("ok", "no_face", "failed")


def parse_save(text: str | Sequence[str]) -> frozenset[str]:
    """``"obj,ply"`` (or a list) → the set of outputs; ``all`` means every choice, ``default`` the
    defaults; a list with a ``+`` on any item adds all its items to the defaults (``+arkit,avatar``).
    Raises :class:`VitdecaError` on unknown names."""
    items = [s.strip().lower() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    chosen: set[str] = set(DEFAULT_SAVE) if any(i.startswith("+") for i in items) else set()
    for item in items:
        name = item.lstrip("+")
        if name == "all":
            chosen |= set(SAVE_CHOICES)
        elif name == "default":
            chosen |= set(DEFAULT_SAVE)
        elif name in SAVE_CHOICES:
            chosen.add(name)
        else:
            raise VitdecaError(
                f"--save: unknown output {name!r} (choose from {', '.join(SAVE_CHOICES)}, all)"
            )
    return frozenset(chosen)


@dataclass
class RunOptions:
    """What the batch runner writes and how: ``save`` ⊆ :data:`SAVE_CHOICES`; ``all_faces`` keeps every
    detected face (else the largest); ``smooth`` filters video codes over time; ``video_frames`` also
    writes the per-frame files of videos; ``batch_size`` images are encoded together."""

    save: frozenset[str] = frozenset(DEFAULT_SAVE)
    overwrite: bool = False
    all_faces: bool = False
    smooth: bool = True
    video_frames: bool = False
    max_frames: int | None = None
    batch_size: int = 1
    progress: bool = True
    same_person: bool = False  # every image shows one person: one shape and albedo (pipeline.identity)


@dataclass
class Record:
    """One line of ``summary.json``: an input (and face) with its status and written files."""

    path: str
    face_index: int | None
    status: str
    message: str = ""
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "face_index": self.face_index,
            "status": self.status,
            "message": self.message,
            "outputs": self.outputs,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Summary:
    """All records of a run; ``counts`` per input (an input counts as its worst face)."""

    out_dir: Path
    records: list[Record]
    complete: bool = False
    name: str = "summary.json"  # summary.rank<R>.json for one rank of a sharded run (pipeline.shard)

    @property
    def counts(self) -> dict[str, int]:
        worst: dict[str, int] = {}
        for r in self.records:
            worst[r.path] = max(worst.get(r.path, 0), STATUSES.index(r.status) if r.status != "ok" else 0)
        out = dict.fromkeys(STATUSES, 0)
        for rank in worst.values():
            out[STATUSES[rank]] += 1
        return out

    def line(self) -> str:
        c = self.counts
        n_faces = sum(1 for r in self.records if r.status == "ok" and r.face_index is not None)
        total = sum(c.values())
        return (
            f"{counted(total, 'input')}: {c['ok']} ok, {c['no_face']} no face, {c['failed']} failed "
            f"({counted(n_faces, 'face')}) -> {self.out_dir / self.name}"
        )

    def write(self) -> Path:
        path = self.out_dir / self.name
        data = {
            "counts": self.counts,
            "complete": self.complete,
            "records": [r.as_dict() for r in self.records],
        }
        try:
            atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())
        except OSError as exc:
            raise VitdecaError(f"{path}: cannot write the summary ({exc.strerror or exc})") from exc
        return path


def merge_rank_summaries(out_dir: Path, world_size: int, input_order: Sequence[str]) -> Summary:
    """Merge the ``summary.rank<R>.json`` of a sharded run (:mod:`.shard`) under ``out_dir`` into
    ``summary.json``: records in ``input_order`` (the inputs as given), counts per input, complete when every
    rank completed. A missing or unreadable rank file (a rank that failed first) makes it incomplete."""
    order = {path: i for i, path in enumerate(input_order)}
    records, complete = [], True
    for rank in range(world_size):
        path = out_dir / rank_summary_name(rank)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("%s: rank %d left no readable summary (%s)", path, rank, exc)
            complete = False
            continue
        complete = complete and bool(data.get("complete"))
        records += [Record(**record) for record in data.get("records", [])]
    records.sort(key=lambda r: order.get(r.path, len(order)))  # stable: faces keep their order
    summary = Summary(out_dir, records, complete=complete)
    summary.write()
    return summary


def drop_unsupported(options: RunOptions, head) -> RunOptions:
    """``options`` without the ARKit outputs when ``head`` has no ARKit semantics (FLAME); logs one line
    saying so. The other outputs are still written."""
    import dataclasses

    wanted = options.save & set(ARKIT_OUTPUTS)
    if not wanted or head.blendshape_names:
        return options
    from vitdeca.arkit import arkit_mapping

    try:
        arkit_mapping(head)
    except VitdecaError as exc:
        log.warning("--save %s not written: %s", ",".join(sorted(wanted)), exc)
    return dataclasses.replace(options, save=options.save - wanted)


def prepare_output_dir(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` and check that files can be written there; :class:`VitdecaError` otherwise."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise VitdecaError(f"{out}: the output path exists and is not a folder")
    probe = out / f".vitdeca-write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise VitdecaError(f"{out}: cannot write to the output folder ({exc.strerror or exc})") from exc
    return out


def _describe(exc: BaseException) -> str:
    """A one-line message for a record: the user error's text, or the type and text of a bug."""
    if isinstance(exc, VitdecaError):
        return first_line(exc)
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__


class BatchRunner:
    """Run a reconstructor over files and write outputs + ``summary.json`` (the CLI's engine).

    ``reconstructor`` needs ``prepare(path, all_faces)``, ``reconstruct_crops(prepared)`` and
    ``iter_video(video, smooth, max_frames)`` with an open :class:`~vitdeca.media.Video` and, for a
    video's vis, ``render_in_image(face, image_shape, scale)`` (see :class:`Reconstructor`);
    ``writer(result, folder, stem, save)`` writes one face's files and returns their paths: the runner
    decides what to write, :mod:`vitdeca.io` and :mod:`vitdeca.media` how.
    ``shard`` (torchrun ranks) makes the runner do only its share of the inputs and write
    ``summary.rank<R>.json`` (:mod:`.shard`).
    """

    def __init__(
        self,
        reconstructor,
        out_dir: str | os.PathLike,
        options: RunOptions,
        writer: Callable[..., list[Path]] | None = None,
        shard: Shard | None = None,
    ) -> None:
        self.rec = reconstructor
        self.out_dir = prepare_output_dir(out_dir)
        self.options = options
        self.writer = writer or write_face_outputs
        self.shard = shard or Shard()

    def run(self, paths: Sequence[Path]) -> Summary:
        """Process ``paths`` (already expanded; any under the output folder are left out); returns the
        summary, also written to ``summary.json`` on every exit path (also Ctrl-C and errors), with
        every record finished so far."""
        from tqdm import tqdm

        paths, dropped = exclude_output_folder(paths, self.out_dir)
        if dropped:
            log.warning("%d inputs inside the output folder %s left out", len(dropped), self.out_dir)
        summary = Summary(self.out_dir, [], name=self.shard.summary_name)
        jobs = self.shard.select(list(zip(paths, output_names(paths), strict=True)))
        order = {str(path): i for i, path in enumerate(paths)}
        bar = tqdm(total=len(jobs), unit="input", disable=not self.options.progress, leave=False)
        try:
            for chunk in self._chunks(jobs):
                if media.media_kind(chunk[0][0]) == "video":
                    summary.records.append(self._video(*chunk[0]))
                else:
                    for record in self._images(chunk):
                        summary.records.append(record)
                bar.update(len(chunk))
            summary.complete = True
        finally:
            bar.close()
            summary.records.sort(key=lambda r: order.get(r.path, -1))  # stable: faces keep their order
            summary.write()
        return summary

    def _chunks(self, jobs: list[tuple[Path, str]]) -> Iterator[list[tuple[Path, str]]]:
        """Consecutive images in groups of ``batch_size`` (all together with ``same_person``); every
        video alone."""
        chunk: list[tuple[Path, str]] = []
        for job in jobs:
            if media.media_kind(job[0]) == "video":
                if chunk:
                    yield chunk
                    chunk = []
                yield [job]
                continue
            chunk.append(job)
            if len(chunk) >= max(1, self.options.batch_size) and not self.options.same_person:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _resume(self, path: Path, name: str) -> tuple[list[Record] | None, str]:
        """(the records of a completed earlier run of this input, or None to do it; a note for a redo)."""
        folder = OutputFolder(self.out_dir, name, str(path))
        if self.options.overwrite:
            return None, ""
        state, records = folder.state()
        if state == "done":
            msg = f"skipped: {folder.final} exists (use --overwrite to redo)"
            return [Record(**{**r, "message": msg, "seconds": 0.0}) for r in records], ""
        if state == "foreign":
            msg = f"{folder.final} holds the outputs of another input (use --overwrite or another --out)"
            return [Record(str(path), None, "failed", msg)], ""
        if state == "partial":
            return None, f"redone: {folder.final} was incomplete (an interrupted run)"
        if state == "failed":
            return None, f"redone: {folder.final} held a failed face"
        return None, ""

    def _images(self, chunk: list[tuple[Path, str]]) -> Iterator[Record]:
        """Prepare each image alone, reconstruct the chunk's faces together, write each input's folder
        as one transaction; yields the records as they are finished."""
        prepared = []
        for path, name in chunk:
            start = time.perf_counter()
            done, note = self._resume(path, name)
            if done is not None:
                yield from done
                continue
            try:
                item = self.rec.prepare(path, all_faces=self.options.all_faces)
            except Exception as exc:  # noqa: BLE001 - isolate every input
                yield self._failed(path, exc, start)
                continue
            if not item.crops:
                yield Record(
                    str(path),
                    None,
                    "no_face",
                    item.message or "no face found",
                    [],
                    time.perf_counter() - start,
                )
                continue
            prepared.append((path, name, item, time.perf_counter() - start, note))
        results = self._reconstruct_isolated([p[2] for p in prepared])
        for (path, name, _, prep_s, note), faces in zip(prepared, results, strict=True):
            yield from self._write_faces(path, name, faces, prep_s, note)

    def _reconstruct_isolated(self, prepared: list) -> list:
        """Reconstruct all at once; if that fails, one by one so that only the bad input fails."""
        if not prepared:
            return []
        start = time.perf_counter()
        try:
            if self.options.same_person:
                from vitdeca.pipeline.identity import reconstruct_same_person

                out = reconstruct_same_person(self.rec, prepared)
            else:
                out = self.rec.reconstruct_crops(prepared)
            share = (time.perf_counter() - start) / len(prepared)
            return [(faces, share) for faces in out]
        except Exception as exc:  # noqa: BLE001
            if len(prepared) == 1:
                return [(exc, time.perf_counter() - start)]
        results = []
        for item in prepared:
            start = time.perf_counter()
            try:
                results.append((self.rec.reconstruct_crops([item])[0], time.perf_counter() - start))
            except Exception as exc:  # noqa: BLE001
                results.append((exc, time.perf_counter() - start))
        return results

    def _write_faces(self, path: Path, name: str, faces_and_time, prep_s: float, note: str) -> list[Record]:
        """Write every face of one input into its folder (one transaction); a record per face."""
        faces, rec_s = faces_and_time
        if isinstance(faces, BaseException):
            return [self._failed(path, faces, None, prep_s + rec_s)]
        folder = OutputFolder(self.out_dir, name, str(path))
        records = []
        try:
            tmp = folder.begin()
            for k, face in enumerate(faces):
                start = time.perf_counter()
                try:
                    written = self.writer(face, tmp, name if k == 0 else f"{name}_{k}", self.options.save)
                    seconds = (prep_s + rec_s) / len(faces) + time.perf_counter() - start
                    records.append(
                        Record(str(path), k, "ok", note, self._relative(written, tmp, name), seconds)
                    )
                except Exception as exc:  # noqa: BLE001
                    records.append(self._failed(path, exc, start, prep_s + rec_s, face_index=k))
            folder.commit([r.as_dict() for r in records])
        except BaseException as exc:
            folder.abort()
            if not isinstance(exc, Exception):
                raise  # Ctrl-C: nothing of this input stays; the summary holds the finished ones
            return [self._failed(path, exc, None, prep_s + rec_s)]
        return records

    def _relative(self, written: list[Path], tmp: Path, name: str) -> list[str]:
        """Output paths as they will be after the commit, relative to the output folder."""
        return [(Path(name) / Path(p).relative_to(tmp)).as_posix() for p in written]

    def _failed(self, path, exc, start, extra: float = 0.0, face_index: int | None = None) -> Record:
        """The record of a failed input; the run goes on. A user's problem (:class:`VitdecaError`, a file
        system error) is one warning line (its traceback at debug level); anything else is a bug, logged
        as an error with its type and traceback."""
        user_problem = isinstance(exc, (VitdecaError, OSError))
        message = _describe(exc)
        shown = message if str(path) in message else f"{path}: {message}"
        if user_problem:
            log.warning("%s", shown, exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)
        else:
            log.error("%s", shown, exc_info=exc)
        seconds = extra + (time.perf_counter() - start if start is not None else 0.0)
        return Record(str(path), face_index, "failed", message, [], seconds)

    def _video(self, path: Path, name: str) -> Record:
        start = time.perf_counter()
        done, note = self._resume(path, name)
        if done is not None:
            return done[0]
        folder = OutputFolder(self.out_dir, name, str(path))
        try:
            tmp = folder.begin()
            outputs, message, any_face = write_video_outputs(
                self.rec, path, tmp, name, self.options, self.writer
            )
            status = "ok" if any_face else "no_face"
            message = f"{note}; {message}" if note else message
            rel = self._relative(outputs, tmp, name)
            record = Record(str(path), 0 if any_face else None, status, message, rel, 0.0)
            record.seconds = time.perf_counter() - start
            folder.commit([record.as_dict()])
        except Exception as exc:  # noqa: BLE001
            folder.abort()
            return self._failed(path, exc, start)
        except BaseException:
            folder.abort()
            raise
        return record


# ------------------------------------------------------------------------------------------- writing
def write_face_outputs(result: FaceResult, folder: Path, stem: str, save: frozenset[str]) -> list[Path]:
    """Write one face's files (``<stem>.obj``, ``<stem>_texture.png``, ...) into ``folder``; returns them."""
    folder.mkdir(parents=True, exist_ok=True)
    files = _write_meshes(result, folder, stem, save)

    def path(suffix: str) -> Path:
        return folder / f"{stem}{suffix}"

    if "landmarks" in save:
        files.append(_save_npy(path("_landmarks2d.npy"), result.landmarks2d))
        if result.landmarks_visible is not None:  # companion: (68,) bool, False = hidden or off-image
            files.append(_save_npy(path("_landmarks2d_visible.npy"), result.landmarks_visible))
        files.append(_save_npy(path("_landmarks3d.npy"), result.landmarks3d))
    if "depth" in save:
        files.append(media.save_png(path("_depth.png"), result.depth_png))
    if "vis" in save:
        files.append(media.save_png(path("_vis.png"), result.vis()))
    if "codes" in save:
        arrays = result.codes_arrays()
        extra = {"crop_matrix": result.crop_matrix, "box": result.box}
        files.append(
            _save_npz(path("_codes.npz"), head_model=np.array(result.mesh.head_model), **arrays, **extra)
        )
    if "now" in save:
        files.append(_save_npy(path("_now_landmarks.npy"), result.now_landmarks))
    if "arkit" in save and result.mesh.arkit is not None:
        files.append(animation.write_arkit_json(path("_arkit.json"), result))
    if "avatar" in save and result.mesh.arkit is not None:
        files.append(animation.write_avatar_glb(path("_avatar.glb"), result))
    return list(dict.fromkeys(Path(f) for f in files))


def _write_meshes(result: FaceResult, folder: Path, stem: str, save: frozenset[str]) -> list[Path]:
    """The mesh files: OBJ (+ detail OBJ) sharing ``<stem>_texture.png``, PLY, GLB, the NoW neutral OBJ."""
    from vitdeca import io

    mesh, files = result.mesh, []
    texture = result.texture if "texture" in save else None
    png = f"{stem}_texture.png"  # one texture file, shared by the OBJ and the detail OBJ
    uvs = {"uv_coords": mesh.uv_coords, "uv_faces": mesh.uv_faces}
    if "obj" in save:
        name = png if texture is not None else None
        obj = folder / f"{stem}.obj"
        parts = _eye_parts(result, stem, texture is not None)
        files += io.save_obj(obj, result.vertices, mesh.faces, **uvs, texture=texture, texture_name=name,
                             name="head", parts=parts)  # fmt: skip
        if result.detail is not None:
            d, obj = result.detail, folder / f"{stem}_detail.obj"
            files += io.save_obj(obj, d.vertices, d.faces, uv_coords=d.uv_coords, texture_name=name)
    elif texture is not None:
        files.append(media.save_png(folder / png, texture))
    if "ply" in save:
        from vitdeca.pipeline.eyes import with_eyeballs

        vertices, faces = with_eyeballs(result.vertices, mesh.faces, result.eyes, mesh.eyes)
        files += io.save_ply(folder / f"{stem}.ply", vertices, faces)
    if "glb" in save:
        files += io.save_glb(folder / f"{stem}.glb", result.vertices, mesh.faces, **uvs, texture=texture)
    if "now" in save:
        files += io.save_obj(folder / f"{stem}_neutral.obj", result.neutral_vertices, mesh.faces)
    return files


def _eye_parts(result: FaceResult, stem: str, textured: bool) -> list:
    """The posed eyeballs as OBJ objects after the head (textured with ``<stem>_eyes.png`` when the
    head is), [] for a head without eyeballs."""
    from vitdeca.pipeline.eyes import eye_obj_parts

    if result.eyes is None or result.mesh.eyes is None:
        return []
    texture = result.mesh.eyes.texture if textured else None
    name = f"{stem}_eyes.png" if textured else None
    return eye_obj_parts(result.eyes, result.mesh.eyes, name, texture)


def _save_npy(path: Path, array: np.ndarray) -> Path:
    """``array`` as float32 (bool arrays as bool) in ``path``, atomically."""
    array = np.asarray(array)
    with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, array if array.dtype == bool else array.astype(np.float32))
    return path


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


# -------------------------------------------------------------------------------------------- videos
def write_video_outputs(
    rec, path: Path, folder: Path, stem: str, options: RunOptions, writer: Callable[..., list[Path]]
) -> tuple[list[Path], str, bool]:
    """Reconstruct a video frame by frame into ``folder``: ``<stem>_vis.mp4``, ``<stem>_codes.npz`` and
    ``<stem>_landmarks2d.npy`` over frames, plus per-frame files under ``frames/`` when asked.

    Returns (written files, a one-line message with frame counts, whether any frame had a face).
    """
    import contextlib

    folder.mkdir(parents=True, exist_ok=True)
    outputs: list[Path] = []
    track: list[VideoFrame] = []
    timeline: list[tuple[float, FaceResult | None]] = []  # every frame, for the ARKit CSV
    n_frames = n_failed = 0
    per_frame_save = options.save - {"vis"}
    with contextlib.ExitStack() as stack:
        video = stack.enter_context(media.Video(path))
        fps, write = video.fps, None
        if "vis" in options.save:
            vis_path = folder / f"{stem}_vis.mp4"
            write = stack.enter_context(media.video_writer(vis_path, fps))
        for frame in rec.iter_video(video, smooth=options.smooth, max_frames=options.max_frames):
            n_frames += 1
            n_failed += bool(frame.error)
            timeline.append((frame.time, frame.face))
            if frame.face is not None:
                track.append(VideoFrame(frame.index, frame.time, np.empty(0), frame.face))
                if options.video_frames:
                    name = f"{stem}_{frame.index:06d}"
                    outputs += writer(frame.face, folder / "frames", name, per_frame_save)
            if write is not None:
                write(_frame_vis(rec, frame))
        if write is not None and n_frames:
            outputs.insert(0, vis_path)
    if n_frames == 0:
        raise VitdecaError(f"{path}: the video has no readable frames")
    outputs += _write_track(folder, stem, track, n_frames, options.save)
    n_face = len(track)
    message = f"{n_frames} frames: {n_face} with a face, {n_frames - n_face - n_failed} without"
    if n_failed:
        message += f", {n_failed} failed"
    if "arkit" in options.save and track and track[0].face.mesh.arkit is not None:
        csv, missing = animation.write_live_link_csv(folder / f"{stem}_arkit.csv", timeline, fps)
        outputs.append(csv)
        message += f"; ARKit CSV: {missing} rows without a face repeat the last weights"
    if "avatar" in options.save and track and track[0].face.mesh.arkit is not None:
        outputs.append(_video_avatar(folder / f"{stem}_avatar.glb", track))
    return outputs, message, n_face > 0


def _video_avatar(path: Path, track: list[VideoFrame]) -> Path:
    """The avatar of a video: the head and texture of its most frontal face (smallest head rotation),
    animated by every frame with a face."""
    angles = [float(np.linalg.norm(f.face.codes.pose[0, :3].detach().cpu().numpy())) for f in track]
    base = track[int(np.argmin(angles))].face
    return animation.write_avatar_glb(path, base, [(f.time, f.face) for f in track])


def _frame_vis(rec, frame: VideoFrame, max_height: int = VIDEO_VIS_HEIGHT) -> np.ndarray:
    """A video frame's vis grid, panels ``max_height`` high, with the whole head rendered over the frame
    (:meth:`Reconstructor.render_in_image`)."""
    if frame.face is not None:
        scale = min(1.0, max_height / frame.image.shape[0])
        renders = rec.render_in_image(frame.face, frame.image.shape[:2], scale)
        return frame.face.vis_in_image(frame.image, max_height, renders)
    image = media.fit_height(frame.image, max_height)
    return media.vis_grid([image] * 4)


def _write_track(
    folder: Path, stem: str, track: list[VideoFrame], n_frames: int, save: frozenset[str]
) -> list[Path]:
    """Codes of every frame with a face (``frame_index``, ``time`` and one (T,n) array per code) and
    the fitted landmarks over all frames (n_frames,68,2), NaN where no face was found."""
    files = []
    if "codes" in save and track:
        codes = [f.face.codes_arrays() for f in track]
        arrays = {name: np.stack([c[name] for c in codes]) for name in codes[0]}
        files.append(
            _save_npz(
                folder / f"{stem}_codes.npz",
                head_model=np.array(track[0].face.mesh.head_model),
                frame_index=np.array([f.index for f in track]),
                time=np.array([f.time for f in track]),
                **arrays,
            )
        )
    if "landmarks" in save and track:
        lmk = np.full((n_frames, 68, 2), np.nan, dtype=np.float32)
        for f in track:
            if f.index < n_frames:
                lmk[f.index] = f.face.landmarks2d
        files.append(_save_npy(folder / f"{stem}_landmarks2d.npy", lmk))
    return files
