"""The demo page (Gradio): inputs (a photo or video file, a webcam snapshot, the bundled examples; method,
detail, all faces) → the vis panel, a 3D viewer of the GLB, the depth map, the ARKit chart and a zip of
every written file. The work is :meth:`vitdeca.demo.engine.DemoEngine.run`; this module only lays it out.

Privacy: Gradio's analytics are switched off (environment and Blocks option), nothing is shared, the page
loads nothing from another host (checked by the browser test) and the server binds to localhost unless told.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

# Before Gradio is imported anywhere: no usage analytics, no version check, no Hugging Face telemetry.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import gradio as gr  # noqa: E402

from vitdeca.demo.engine import MB, METHOD_HELP, DemoEngine, DemoResult  # noqa: E402
from vitdeca.errors import VitdecaError  # noqa: E402
from vitdeca.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES  # noqa: E402

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's start-up requests to itself

TITLE = "vitdeca: a 3D head from one photo"
INTRO = (
    "Upload a photo or a short video (or take a webcam snapshot, or pick an example), then press "
    "**Reconstruct**. Everything runs on this machine; nothing is sent anywhere. The files are those of "
    "`vitdeca reconstruct`."
)
N_OUTPUTS = 8  # status, vis, vis video, 3D model, depth, ARKit chart, ARKit note, zip


def build_app(engine: DemoEngine, examples: list[Path] | None = None) -> gr.Blocks:
    """The page's Blocks, wired to ``engine``; ``examples`` are offered under the upload box."""
    with gr.Blocks(title="vitdeca demo", analytics_enabled=False) as app:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                inputs = _input_column(engine, examples)
            with gr.Column(scale=3, min_width=480):
                outputs = _output_column()
        run_button, upload, webcam = inputs[0], inputs[1], inputs[2]

        def on_run(upload, webcam, method, detail, all_faces, progress=gr.Progress()):  # noqa: B008
            return handle(engine, upload, webcam, method, detail, all_faces, progress)

        run_button.click(on_run, inputs=list(inputs[1:]), outputs=outputs, api_name="reconstruct")
        upload.change(_clear_other, inputs=upload, outputs=webcam, show_progress="hidden", queue=False)
        webcam.change(_clear_other, inputs=webcam, outputs=upload, show_progress="hidden", queue=False)
    return app


def _input_column(engine: DemoEngine, examples: list[Path] | None) -> tuple:
    """The inputs: (run button, upload, webcam, method, detail, all faces)."""
    suffixes = sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    with gr.Tabs():
        with gr.Tab("Photo or video"):
            upload = gr.File(label="photo or video file", file_types=suffixes, elem_id="upload")
        with gr.Tab("Webcam"):
            webcam = gr.Image(
                label="webcam snapshot", sources=["webcam"], type="filepath", format="png", elem_id="webcam"
            )
    if examples:
        gr.Examples([[os.fspath(p)] for p in examples], inputs=[upload], label="examples")
    method = gr.Radio(
        list(engine.methods),
        value=engine.default_method,
        label="method",
        info="; ".join(f"{m}: {METHOD_HELP[m]}" for m in engine.methods)
        + ("" if engine.checkpoint else " (regress and refine need `vitdeca demo --checkpoint`)"),
        interactive=len(engine.methods) > 1,
        elem_id="method",
    )
    detail = gr.Checkbox(
        value=engine.checkpoint is not None,
        label="detail (UV displacement; needs a trained model)",
        interactive=engine.checkpoint is not None,
    )
    all_faces = gr.Checkbox(value=False, label="all faces (default: the largest)")
    run_button = gr.Button("Reconstruct", variant="primary", elem_id="run")
    return run_button, upload, webcam, method, detail, all_faces


def _output_column() -> list:
    """The outputs, in :func:`handle`'s order."""
    status = gr.Textbox(label="message", interactive=False, elem_id="status")
    vis = gr.Image(label="input | landmarks | shape | textured render", interactive=False, elem_id="vis")
    vis_video = gr.Video(label="input | landmarks | shape | render", visible=False, elem_id="vis_video")
    with gr.Row():
        model = gr.Model3D(
            label="3D head (GLB: drag to turn)", clear_color=(1, 1, 1, 1), height=380, elem_id="viewer"
        )
        depth = gr.Image(label="depth (nearer is brighter)", interactive=False, elem_id="depth")
    arkit_note = gr.Markdown("ARKit blendshape weights appear here.", elem_id="arkit_note")
    arkit = gr.Image(label="ARKit blendshape weights", interactive=False, visible=False, elem_id="arkit")
    archive = gr.File(label="every file (zip)", interactive=False, elem_id="zip")
    return [status, vis, vis_video, model, depth, arkit, arkit_note, archive]


def _clear_other(value: Any):
    """A new upload clears the webcam snapshot and vice versa (so the run uses what was given last)."""
    return None if value else gr.update()


def handle(engine: DemoEngine, upload, webcam, method, detail, all_faces, progress=None) -> tuple:
    """The Reconstruct button: run the engine on the upload (else the webcam snapshot) and return the
    outputs of :func:`_output_column`. A user error shows as ``error: <the CLI's line>`` in the status box;
    a bug shows one line there too (its traceback goes to the server log, never to the page)."""
    source = upload or webcam

    def report(fraction: float, text: str) -> None:
        if progress is not None:
            progress(fraction, desc=text)

    try:
        options = {"method": method, "detail": bool(detail), "all_faces": bool(all_faces)}
        result = engine.run(source, progress=report, **options)
    except VitdecaError as exc:
        return _empty(f"error: {exc}")
    except Exception as exc:  # noqa: BLE001 - the page gets one line, the log the traceback
        log.exception("demo: reconstruction failed")
        first = (str(exc).strip().splitlines() or [""])[0]
        return _empty(f"error: internal error ({type(exc).__name__}: {first}); see the server log")
    return _shown(result)


def _shown(result: DemoResult) -> tuple:
    status = f"{result.message} ({result.method}, {result.seconds:.1f} s)"
    video = result.vis_video is not None
    return (
        status,
        gr.update(value=_path(result.vis), visible=not video),
        gr.update(value=_path(result.vis_video), visible=video),
        _path(result.model),
        _path(result.depth),
        gr.update(value=_path(result.arkit_chart), visible=result.arkit_chart is not None),
        result.arkit_note,
        _path(result.zip),
    )


def _empty(status: str) -> tuple:
    vis, video = gr.update(value=None, visible=True), gr.update(value=None, visible=False)
    return (status, vis, video, None, None, gr.update(value=None, visible=False), "", None)


def _path(path: Path | None) -> str | None:
    return None if path is None else os.fspath(path)


def launch(
    engine: DemoEngine,
    host: str = "127.0.0.1",
    port: int = 7860,
    examples: list[Path] | None = None,
    block: bool = True,
    quiet: bool = False,
):
    """Serve the page on ``host:port`` (localhost by default); returns the Blocks (still serving when
    ``block`` is False). Uploads above the engine's limit are refused by the server itself."""
    app = build_app(engine, examples)
    app.queue(default_concurrency_limit=1, max_size=32)
    allowed = [os.fspath(engine.workdir)] + sorted({os.fspath(Path(p).parent) for p in examples or []})
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        show_error=False,
        quiet=quiet,
        max_file_size=int(engine.max_upload_mb * MB),
        allowed_paths=allowed,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        enable_monitoring=False,
        prevent_thread_lock=not block,
    )
    return app
