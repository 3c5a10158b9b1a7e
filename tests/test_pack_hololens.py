"""HoloLens packer on the real hololens_rgbd_000 sequence, the `taskology pack` command, frame ranges, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from PIL import Image

from hpc_taskology.cli import main as cli_main
from hpc_taskology.data.pack import hololens
from hpc_taskology.data.pack.common import FrameRange, SourceError
from hpc_taskology.data.parallel import pack_plan
from hpc_taskology.data.schema import SchemaError, open_packed


@pytest.fixture(scope="module")
def src(shared_data) -> Path:
    return shared_data / "hololens_rgbd_000"


@pytest.fixture(scope="module")
def packed(src, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("holo") / "holo.h5"
    assert cli_main(["pack", "hololens", str(src), "-o", str(out), "--frames", "5:14", "--no-progress"]) == 0
    return out


def test_contents_equal_native(packed, src):
    names = sorted(p.name for p in (src / "images").glob("*.png"))
    poses = np.loadtxt(src / "poses.txt").reshape(-1, 4, 4)
    K = np.loadtxt(src / "K.txt")
    with open_packed(packed) as f:
        assert list(f["frame_id"][:]) == list(range(5, 15))  # inclusive range of frame ids
        for i, fid in enumerate(range(5, 15)):
            k = names.index(f"{fid:05d}.png")  # poses.txt line = index of the image in sorted order
            assert np.array_equal(f["rgb"][i], np.asarray(Image.open(src / "images" / f"{fid:05d}.png")))
            mm = np.asarray(Image.open(src / "depth" / f"{fid:05d}.png"))
            np.testing.assert_allclose(f["depth"][i], mm / 1000.0, rtol=1e-7, atol=0)  # float32 of mm / 1000
            assert np.array_equal(f["valid"][i], mm > 0)
            np.testing.assert_array_equal(f["cam_to_world"][i], poses[k])
            np.testing.assert_array_equal(f["K"][i], K)
        assert f.attrs["licence"].startswith("MIT License")
        assert np.isnan(f["timestamp"][:]).all()
    lic = packed.with_name("LICENSE-holo.txt")
    assert lic.read_text().startswith("MIT License")


def test_frame_range_parse():
    assert FrameRange.parse("3:152") == FrameRange(3, 152)
    assert 152 in FrameRange.parse("3:152") and 153 not in FrameRange.parse("3:152")
    assert FrameRange.parse("7") == FrameRange(7, 7)
    assert FrameRange.parse(":4") == FrameRange(None, 4) and FrameRange.parse("4:") == FrameRange(4, None)
    assert FrameRange.parse(None) is None
    for bad in ("a:b", "5:3", "1:2:3"):
        with pytest.raises(ValueError, match="frames"):
            FrameRange.parse(bad)


def test_empty_selection_errors(src):
    with pytest.raises(SourceError, match="no frame selected"):
        hololens.plan(src, FrameRange(1000, 2000))


def _mini(src: Path, dst: Path, n: int = 3) -> Path:
    (dst / "images").mkdir(parents=True)
    (dst / "depth").mkdir()
    names = sorted(p.name for p in (src / "images").glob("*.png"))[:n]
    for name in names:
        shutil.copy(src / "images" / name, dst / "images" / name)
        shutil.copy(src / "depth" / name, dst / "depth" / name)
    shutil.copy(src / "K.txt", dst / "K.txt")
    (dst / "poses.txt").write_text("\n".join((src / "poses.txt").read_text().splitlines()[:n]) + "\n")
    return dst


def test_nan_pose_names_file_and_line(src, tmp_path):
    tree = _mini(src, tmp_path / "s")
    lines = (tree / "poses.txt").read_text().splitlines()
    lines[1] = " ".join(["nan"] + lines[1].split()[1:])
    (tree / "poses.txt").write_text("\n".join(lines))
    with pytest.raises(SourceError, match=r"poses.txt:2.*NaN"):
        hololens.plan(tree)


def test_pose_count_mismatch(src, tmp_path):
    tree = _mini(src, tmp_path / "s")
    (tree / "poses.txt").write_text("\n".join((tree / "poses.txt").read_text().splitlines()[:2]))
    with pytest.raises(SourceError, match="2 pose lines but 3 images"):
        hololens.plan(tree)


def test_eight_bit_depth_rejected_and_output_kept(src, tmp_path):
    tree = _mini(src, tmp_path / "s")
    out = tmp_path / "o.h5"
    pack_plan(hololens.plan(tree), out, progress=False)
    before = out.read_bytes()
    bad = tree / "depth" / "00004.png"
    Image.fromarray((np.asarray(Image.open(bad)) // 256).astype(np.uint8)).save(bad)
    with pytest.raises(SourceError, match=r"00004.png.*16-bit"):
        pack_plan(hololens.plan(tree), out, progress=False)
    assert out.read_bytes() == before


def test_missing_k_named(src, tmp_path):
    tree = _mini(src, tmp_path / "s")
    (tree / "K.txt").unlink()
    with pytest.raises(FileNotFoundError, match="K.txt"):
        hololens.plan(tree)


def test_cli_failure_returns_nonzero(src, tmp_path, capsys):
    tree = _mini(src, tmp_path / "s")
    (tree / "K.txt").write_text("1 2 3")
    assert cli_main(["pack", "hololens", str(tree), "-o", str(tmp_path / "x.h5"), "--no-progress"]) == 1
    assert "K.txt" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_corrupt_and_truncated_packed_file(packed, tmp_path):
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(packed.read_bytes()[: packed.stat().st_size // 3])
    with pytest.raises(SchemaError, match="trunc.h5"):
        with open_packed(trunc) as f:  # may open (superblock intact) but then cannot read its data
            f["rgb"][f["rgb"].shape[0] - 1]
            f["depth"][f["depth"].shape[0] - 1]
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(SchemaError, match="junk.h5"):
        open_packed(junk)
