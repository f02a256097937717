"""User errors of the CLI: exit status 2 and one line, before any model is built."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch  # noqa: F401 - the skipif condition

from vitdeca.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reconstruct"], "no input"),
        (["reconstruct", "{tmp}/missing.jpg", "--out", "{tmp}/o"], "missing.jpg: no such file"),
        (["reconstruct", "{tmp}/x.jpg", "--save", "objj", "--out", "{tmp}/o"], "unknown output 'objj'"),
        (["reconstruct", "{tmp}/x.jpg", "--out", "{tmp}/x.jpg/sub"], "cannot write"),
        (["fit", "{tmp}/x.jpg", "--out", "{tmp}/o", "--stages", "landmark"], "unknown 'landmark'"),
        (["reconstruct", "{tmp}/x.jpg", "--same-person", "--all-faces"], "drop --all-faces"),
        (["fit", "{tmp}/x.jpg", "--out", "{tmp}/o", "--iterations", "a"], "--iterations 'a'"),
        (
            ["reconstruct", "{tmp}/x.jpg", "--out", "{tmp}/o", "--method", "fit", "--set", "no_such_key=1"],
            "no_such_key",
        ),
        (
            ["reconstruct", "{tmp}/x.jpg", "--checkpoint", "m.pt", "--method", "regress", "--set", "lr=1"],
            "--method regress does not fit",
        ),
        (
            ["transfer", "--identity", "{tmp}/x.jpg", "--expression", "{tmp}/x.jpg", "--save", "nope"],
            "'nope'",
        ),
    ],
)
def test_user_errors_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    (tmp_path / "x.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    status = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("vitdeca: error:") and message in err and len(err.strip().splitlines()) == 1


def test_a_programming_error_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    """Not a user error: the exception leaves ``main`` (Python prints the traceback), no exit status 2."""
    from vitdeca.pipeline import Reconstructor

    def broken(*args, **kwargs):
        raise ValueError("encode: images must be (B,3,H,W), got (3, 8, 8)")

    (tmp_path / "x.jpg").write_bytes(b"x")
    monkeypatch.setattr(Reconstructor, "from_pretrained", broken)
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        main(["reconstruct", str(tmp_path / "x.jpg"), "--out", str(tmp_path / "o"), "--no-progress"])
    assert "vitdeca: error:" not in capsys.readouterr().err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["reconstruct", "--help"])
    out = capsys.readouterr().out
    assert "--checkpoint" in out and "--all-faces" in out and "--no-detail" in out and "--demo" in out


class _NoModel:
    """Stands in for Reconstructor.from_pretrained: fails the test if a model would be built."""

    def __call__(self, *args, **kwargs):
        raise AssertionError("the model was built before the options were checked")


def test_the_command_line_is_built_without_torch():
    """``vitdeca --help`` (any parser) stays quick: building the parser imports no torch (~1.5 s)."""
    import subprocess

    code = "import sys, vitdeca.cli; vitdeca.cli.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reconstruct", "{tmp}/x.jpg", "--detector", "nosuch"], "unknown face backend 'nosuch'"),
        (["fit", "{tmp}/x.jpg", "--detector", "mtcnn"], "needs the facenet_pytorch package"),
        (["reconstruct", "{tmp}/x.jpg", "--detector", "fan"], "pip install face-alignment"),
        (["reconstruct", "{tmp}/x.jpg", "--save", "obj,nope"], "unknown output 'nope'"),
        (["transfer", "--identity", "{tmp}/x.jpg", "--expression", "{tmp}/x.jpg", "--detector", "x"], "'x'"),
    ],
)
def test_options_are_checked_before_any_work(tmp_path, capsys, monkeypatch, argv, message):
    from vitdeca.pipeline import Reconstructor

    (tmp_path / "x.jpg").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # as on a machine without it
    monkeypatch.setitem(sys.modules, "face_alignment", None)
    monkeypatch.setattr(Reconstructor, "from_pretrained", _NoModel())
    out = tmp_path / "out"
    status = main([a.format(tmp=tmp_path) for a in argv] + ["--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()  # nothing was done


@pytest.mark.skipif("torch.cuda.is_available()", reason="needs a machine without CUDA")
def test_unavailable_device_is_a_usage_error(tmp_path, capsys, monkeypatch):
    from vitdeca.pipeline import Reconstructor

    (tmp_path / "x.jpg").write_bytes(b"x")
    monkeypatch.setattr(Reconstructor, "from_pretrained", _NoModel())
    status = main(["reconstruct", str(tmp_path / "x.jpg"), "--device", "cuda", "--out", str(tmp_path / "o")])
    assert status == 2 and "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_rerun_with_out_inside_the_inputs_reads_only_the_photos(tmp_path, capsys, monkeypatch, fake_rec):
    """The first run's _vis/_depth/_texture PNGs under --out are never taken as inputs."""
    from vitdeca.pipeline import Reconstructor

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (photos / name).write_bytes(b"good")
    monkeypatch.setattr(Reconstructor, "from_pretrained", lambda *a, **k: fake_rec)
    out = photos / "results"
    argv = ["reconstruct", str(photos), "--out", str(out), "--save", "vis,depth,texture", "--no-progress"]
    assert main(argv) == 0
    assert (out / "a" / "a_vis.png").exists()
    assert main([*argv, "--overwrite"]) == 0
    records = json.loads((out / "summary.json").read_text())["records"]
    assert sorted(Path(r["path"]).name for r in records) == ["a.jpg", "b.jpg"]
    assert "2 inputs: 2 ok" in capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["reconstruct", str(out), "--out", str(out)]) == 2  # only outputs given: nothing to do
    assert "every input is inside the output folder" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["fit", "x.jpg"], ["reconstruct", "x.jpg"], ["transfer", "--identity",
                                     "a.jpg", "--expression", "b.jpg"]])  # fmt: skip
def test_threads_option_sets_the_process_policy(monkeypatch, command):

    from vitdeca.cli import build_parser
    from vitdeca.cli.reconstruct import apply_threads

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    apply_threads(build_parser().parse_args(command))
    assert calls == []  # default: torch's own thread count (all it allows)
    apply_threads(build_parser().parse_args([*command, "--threads", "3"]))
    assert calls == [3]


@pytest.mark.parametrize("command", ["reconstruct", "fit"])
def test_precision_option_reaches_the_reconstructor(tmp_path, monkeypatch, fake_rec, command):
    """``--precision bf16`` is passed to ``Reconstructor.from_pretrained`` (default fp32)."""
    from vitdeca.pipeline import Reconstructor

    (tmp_path / "a.jpg").write_bytes(b"good")
    seen = []
    monkeypatch.setattr(
        Reconstructor, "from_pretrained", lambda *a, **k: seen.append(k["precision"]) or fake_rec
    )
    for extra in ([], ["--precision", "bf16"]):
        out = tmp_path / f"out{len(seen)}"
        assert main([command, str(tmp_path / "a.jpg"), "--out", str(out), "--no-progress", *extra]) == 0
    assert seen == ["fp32", "bf16"]


def test_reconstruct_set_reaches_refines_fit_config(tmp_path, monkeypatch, fake_rec):
    """``vitdeca reconstruct --set KEY=VALUE`` builds the FitConfig refine and fit use (``vitdeca fit``'s
    option), e.g. refine to the detector's points alone; without it the defaults (None)."""
    from vitdeca.pipeline import Reconstructor

    (tmp_path / "a.jpg").write_bytes(b"good")
    seen = []
    monkeypatch.setattr(Reconstructor, "from_pretrained", lambda *a, **k: seen.append(k["fit"]) or fake_rec)
    base = ["reconstruct", str(tmp_path / "a.jpg"), "--checkpoint", "m.pt", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "o1")]) == 0
    assert main([*base, "--out", str(tmp_path / "o2"), "--set", "refine_fusion=false"]) == 0
    assert seen[0] is None and seen[1].refine_fusion is False


def test_transfer_passes_its_precision(tmp_path, monkeypatch, fake_rec):
    """``vitdeca transfer --precision bf16`` reaches ``Reconstructor.from_pretrained`` (default fp32)."""
    import vitdeca.pipeline.transfer as transfer_module
    from vitdeca.pipeline import Reconstructor

    (tmp_path / "a.jpg").write_bytes(b"good")
    seen = []
    monkeypatch.setattr(
        Reconstructor, "from_pretrained", lambda *a, **k: seen.append(k["precision"]) or fake_rec
    )
    monkeypatch.setattr(transfer_module, "transfer", lambda *a, **k: [])
    photo = str(tmp_path / "a.jpg")
    for extra in ([], ["--precision", "bf16"]):
        command = ["transfer", "--identity", photo, "--expression", photo, "--out", str(tmp_path / "out")]
        assert main([*command, *extra]) == 0
    assert seen == ["fp32", "bf16"]
