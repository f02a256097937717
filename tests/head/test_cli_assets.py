"""``vitdeca assets``: install and info, including the one-line error and exit status 2."""

from __future__ import annotations

import zipfile

from vitdeca.cli import main


def test_info_prints_the_ict_summary(ict_head, ict_home, monkeypatch, capsys):
    monkeypatch.setenv("VITDECA_HOME", str(ict_home))
    assert main(["assets", "info"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "vertices: 14062",
        "faces: 28068 triangles",
        "n_shape: 100",
        "n_expression: 55",
        "n_pose: 3",
        "units: cm",
        "face, head_and_neck, mouth_socket",
        "landmarks: 68",
        "face mask: 6706 vertices",
        str(ict_home),
    ):
        assert expected in out


def test_install_reports_the_cache(ict_head, ict_home, monkeypatch, capsys):
    monkeypatch.setenv("VITDECA_HOME", str(ict_home))
    assert main(["assets", "install", "ict-facekit"]) == 0  # already cached: verified, not converted
    assert "14062 vertices, 28068 triangles, units cm" in capsys.readouterr().out


def test_bad_archive_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VITDECA_HOME", str(tmp_path / "home"))
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("x.txt", "x")
    assert main(["-q", "assets", "install", "ict-facekit", "--from", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("vitdeca: error: ") and "bad.zip" in err


def test_info_for_flame(flame_files, monkeypatch, capsys):
    monkeypatch.delenv("VITDECA_FLAME", raising=False)
    assert main(["-q", "assets", "info", "--model", "flame"]) == 2
    assert "flame.is.tue.mpg.de" in capsys.readouterr().err
    assert main(["assets", "info", "--model", "flame", "--flame-path", str(flame_files.ours)]) == 0
    out = capsys.readouterr().out
    assert "vertices: 5023" in out and "n_pose: 6" in out and "units: m" in out
