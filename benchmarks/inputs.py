"""Inputs shared by the benchmarks: the read-only ``../shared`` folder and its default real-photo folders."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

PHOTO_FOLDERS = ("deca_testsamples", "dlib_examples")  # the held-out real photos the fit benchmarks use


def shared_dir() -> Path:
    """``$VITDECA_SHARED``, else the ``shared`` folder beside the repository (CI's layout)."""
    return Path(os.environ.get("VITDECA_SHARED") or Path(__file__).resolve().parents[2] / "shared")


def add_model_and_photos(parser: argparse.ArgumentParser) -> None:
    """``--model`` (default ``vitdeca-vits14``) and ``--photos DIR ...`` (default :data:`PHOTO_FOLDERS`)."""
    parser.add_argument("--model", default="vitdeca-vits14")
    faces = shared_dir() / "faces"
    parser.add_argument("--photos", nargs="+", default=[str(faces / name) for name in PHOTO_FOLDERS])
