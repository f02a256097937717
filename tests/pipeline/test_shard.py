"""Sharded reconstruct (pipeline.shard): the split, the merge, and 2 gloo ranks under torchrun on CPU
against a single process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vitdeca.errors import VitdecaError
from vitdeca.pipeline.batch import Record, Summary, merge_rank_summaries
from vitdeca.pipeline.shard import Shard

PHOTOS = (  # 3 inputs over 2 ranks: rank 0 takes the first and the last
    "deca_testsamples/examples/IMG_0392_inputs.jpg",
    "deca_testsamples/AFLW2000/image00181.jpg",
    "dlib_examples/dogs.jpg",  # no face: a record, no files
)


def test_shard_from_torchrun_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert Shard.from_env() == Shard(0, 1, 0) and not Shard.from_env().active
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    shard = Shard.from_env()
    assert shard == Shard(2, 3, 0) and shard.active and shard.summary_name == "summary.rank2.json"
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(VitdecaError, match="RANK=3"):
        Shard.from_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(VitdecaError, match="integers"):
        Shard.from_env()


def test_select_partitions_the_inputs_in_order():
    jobs = [f"img{i}" for i in range(11)]
    shares = [Shard(rank, 4).select(jobs) for rank in range(4)]
    assert sorted(sum(shares, [])) == sorted(jobs)  # every input once
    assert shares[1] == ["img1", "img5", "img9"]
    assert Shard().select(jobs) == jobs


def test_merge_restores_input_order_and_flags_a_missing_rank(tmp_path):
    order = ["a.jpg", "b.jpg", "c.jpg"]
    Summary(tmp_path, [Record("b.jpg", 0, "ok", outputs=["b/b.obj"])], True, "summary.rank1.json").write()
    Summary(tmp_path, [Record("c.jpg", None, "no_face"), Record("a.jpg", 0, "ok")], True,
            "summary.rank0.json").write()  # fmt: skip
    merged = merge_rank_summaries(tmp_path, 2, order)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert [r["path"] for r in data["records"]] == order and data["complete"]
    assert data["counts"] == {"ok": 2, "no_face": 1, "failed": 0} == merged.counts
    (tmp_path / "summary.rank1.json").unlink()
    assert not merge_rank_summaries(tmp_path, 2, order).complete


def _reconstruct(args: list[str], env: dict, ranks: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "vitdeca"]
    if ranks > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                    str(ranks), "-m", "vitdeca"]  # fmt: skip
    return subprocess.run(launcher + ["reconstruct", *args], env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip


def _files(out: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(out)): p for p in out.rglob("*") if p.is_file() and not p.name.startswith("summary")
    }


@pytest.mark.slow
def test_two_ranks_write_what_one_process_writes(faces_dir, ict_archive, ict_home, tmp_path):
    """torchrun with 2 gloo ranks on CPU: the same files (codes equal), the same summary.json records,
    each input written by exactly one rank; a re-run skips everything."""
    inputs = [str(faces_dir / name) for name in PHOTOS]
    env = {**os.environ, "VITDECA_HOME": str(ict_home), "VITDECA_ICT_FACEKIT": str(ict_archive),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    # batch 1: a rank's batches hold other inputs than the single process's, and a batch's rounding (~1e-6)
    # moves the re-framed crop of the profile image00181 by a fraction of a pixel, which its eyes' reading
    # (eyeBlink, eyeLook) can amplify to 0.1 (session 12: 0.42 against 0.51); the sharding must change nothing
    options = ["--method", "regress", "--save", "codes,obj,landmarks", "--no-progress", "--threads", "1",
               "--batch-size", "1"]  # fmt: skip
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    done = _reconstruct([*inputs, "--out", str(single), *options], env)
    assert done.returncode == 0, done.stderr[-3000:]
    done = _reconstruct([*inputs, "--out", str(sharded), *options], env, ranks=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "all 2 ranks: 3 inputs: 2 ok, 1 no face, 0 failed" in done.stdout

    one, two = _files(single), _files(sharded)
    assert sorted(one) == sorted(two) and any(name.endswith("_codes.npz") for name in one)
    for name in (n for n in one if n.endswith(".npz")):
        a, b = np.load(one[name]), np.load(two[name])
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")

    def records(out: Path, name: str = "summary.json") -> list[tuple]:
        data = json.loads((out / name).read_text())
        return [(r["path"], r["face_index"], r["status"], sorted(r["outputs"])) for r in data["records"]]

    assert records(single) == records(sharded)
    rank_paths = [{r[0] for r in records(sharded, f"summary.rank{k}.json")} for k in range(2)]
    assert not rank_paths[0] & rank_paths[1] and rank_paths[0] | rank_paths[1] == set(inputs)

    before = {name: path.stat().st_mtime_ns for name, path in two.items()}
    done = _reconstruct([*inputs, "--out", str(sharded), *options], env, ranks=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {name: path.stat().st_mtime_ns for name, path in _files(sharded).items()} == before
    statuses = json.loads((sharded / "summary.json").read_text())["records"]
    assert all(r["message"].startswith("skipped") for r in statuses if r["status"] == "ok")
