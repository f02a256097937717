"""``vitdeca synth --n N --seed S --out DIR``: rendered faces with exact 3D ground truth (NoW layout)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="render a synthetic face dataset with exact ground truth (NoW layout + training manifest)",
        description="Sample identities, expressions, poses, lights and appearances of the head model, render "
        "them over backgrounds and write a NoW-layout dataset (images, neutral ground-truth scans in mm with "
        "their 7 landmarks, 68 2D landmarks, masks, the true codes) plus a manifest.jsonl that "
        "'vitdeca train' reads. The same seed gives the same files.",
    )
    parser.add_argument("--n", type=int, required=True, metavar="N", help="number of images")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--out", required=True, metavar="DIR", help="new dataset folder")
    parser.add_argument(
        "--images-per-subject", type=int, default=4, metavar="K", help="images per identity (default 4)"
    )
    parser.add_argument(
        "--backgrounds",
        metavar="DIR",
        help="photos to crop backgrounds from (crops avoid their faces; default: procedural only)",
    )
    parser.add_argument(
        "--background-detector",
        choices=("dlib", "mtcnn", "none"),
        default="dlib",
        help="face detector that keeps background crops off the photos' faces (none: trust the photos)",
    )
    parser.add_argument(
        "--textures",
        metavar="DIR",
        help="UV textures (*_texture.png from 'vitdeca reconstruct --save texture') to use as albedos "
        "(default: the procedural skin-tone model)",
    )
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument(
        "--supersample", type=int, default=2, help="render this many times larger (default 2)"
    )
    parser.add_argument("--uv-size", type=int, default=512, help="albedo UV map size (default 512)")
    parser.add_argument("--head", default="ict", choices=("ict", "flame"), help="head model (default ict)")
    parser.add_argument(
        "--head-path", metavar="PATH", help="FLAME: the generic_model.pkl (else $VITDECA_FLAME)"
    )
    parser.add_argument("--yaw", type=float, default=20.0, help="std of the yaw in degrees (default 20)")
    parser.add_argument(
        "--yaw-max",
        type=float,
        default=0.0,
        help="draw the yaw uniformly in ±YAW_MAX degrees (up to 90: profiles) instead of N(0, yaw²)",
    )
    parser.add_argument(
        "--face-fraction", type=float, nargs=2, default=(0.62, 0.72), metavar=("LOW", "HIGH"),
        help="landmark box / image side, drawn uniformly (default 0.62 0.72; smaller leaves room for crop "
        "jitter in training)",
    )  # fmt: skip
    parser.add_argument(
        "--eyes", choices=("convex", "ict"), default="convex",
        help="convex: the eye sockets bulged into balls (default); ict: ICT-FaceKit's eyeballs turned by "
        "a random gaze, recorded in codes.npz",
    )  # fmt: skip
    parser.add_argument(
        "--gaze",
        type=float,
        default=15.0,
        help="with --eyes ict: std of the eyes' yaw/pitch in degrees (default 15)",
    )
    parser.add_argument(
        "--independent-expressions", dest="consistent_expressions", action="store_false",
        help="draw every blend shape independently, contradicting pairs included (eyeBlink with "
        "eyeWide, mouthSmile with mouthFrown: vitdeca.arkit.EXCLUSIVE); default: the smaller of such "
        "a pair is 0",
    )  # fmt: skip
    _add_effect_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="images rendered at once (default 8)")
    parser.set_defaults(func=run)


EFFECT_FLAGS = {  # flag: (SynthOptions field, metavar, help); defaults are SynthOptions'
    "--blur-fraction": (
        "blur_fraction", "F", "share of blurred images: defocus (Gaussian) or motion, half each (default 0.3)"
    ),
    "--blur-max-px": (
        "blur_max_px", "PX", "largest blur std in output pixels, drawn uniformly from 0.5 (default 2)"
    ),
    "--occluder-fraction": (
        "occluder_fraction", "F", "share of images with a hand, glasses or an object over the face; the "
        "masks and the landmarks' visibility exclude it (default 0.2)",
    ),
    "--occluder-max-area": (
        "occluder_max_area", "F", "largest share of the face mask an occluder covers (default 0.4)"
    ),
    "--neck-fade": (
        "neck_fade_mm", "MM", "the neck fades out over its last MM mm (default 25; 0: a hard cut)"
    ),
    "--blink-fraction": (
        "blink_fraction", "F", "share of expressive images whose eyes blink: both eyeBlink weights "
        "0.6-1, ICT-FaceKit only (default 0: blinks only as the random expressions make them)",
    ),
}  # fmt: skip


def _add_effect_arguments(parser: argparse.ArgumentParser) -> None:
    """The photo-like effects' flags (unset: :class:`~vitdeca.data.synth_spec.SynthOptions`' defaults)."""
    for flag, (field, metavar, text) in EFFECT_FLAGS.items():
        parser.add_argument(flag, dest=field, type=float, default=None, metavar=metavar, help=text)


def run(args: argparse.Namespace) -> int:
    from vitdeca.data.synth import SynthOptions, write_synthetic_dataset

    options = SynthOptions(
        n_images=args.n, images_per_subject=args.images_per_subject, seed=args.seed, size=args.size,
        supersample=args.supersample, uv_size=args.uv_size, head_model=args.head, head_path=args.head_path,
        yaw=args.yaw, yaw_max=args.yaw_max, face_fraction=tuple(args.face_fraction),
        backgrounds=args.backgrounds, textures=args.textures, batch_size=args.batch_size,
        eyes=args.eyes, gaze=args.gaze, consistent_expressions=args.consistent_expressions,
        background_detector=None if args.background_detector == "none" else args.background_detector,
        **{f: getattr(args, f) for f, _, _ in EFFECT_FLAGS.values() if getattr(args, f) is not None},
    )  # fmt: skip
    summary = write_synthetic_dataset(args.out, options, progress=not args.quiet)
    print(f"synth: {summary['images']} images of {summary['subjects']} subjects -> {args.out}")
    return 0
