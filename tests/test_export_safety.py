"""`gan-tui export --out` writes only new regular files, or, with --force, replaces a file an export of
the same kind wrote; never the run's own files, never a device, pipe, folder or link. A refusal is one
line and exit status 2, and the path it names is left exactly as it was."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from engine.export import ExportRefused, export_csv, export_grid
from tui_gan.cli import main

WHATS = ("grid", "gif", "csv")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from engine.runner import QueueSink, Runner
    from tests.conftest import tiny_config

    runner = Runner(tiny_config(steps=30, sample_every=10, checkpoint_every=10), QueueSink(),
                    runs_dir=tmp_path_factory.mktemp("runs"), run_name="r")
    runner.setup()
    while runner.tick():
        pass
    return runner.run


def _fingerprint(path: Path) -> tuple:
    info = os.lstat(path)
    body = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else ""
    return info.st_mode, info.st_ino, info.st_rdev, body


def _refused(capsys, *argv: str) -> str:
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gan-tui: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("what", WHATS)
def test_an_existing_file_is_refused_and_kept(run, tmp_path, capsys, what):
    mine = tmp_path / "thesis.bin"
    mine.write_bytes(b"my own work")
    for force in ((), ("--force",)):
        err = _refused(capsys, str(run.path), what, "--out", str(mine), *force)
        assert str(mine) in err
    assert mine.read_bytes() == b"my own work"


@pytest.mark.parametrize("what", WHATS)
@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl", "state.json", "fixed_noise.pt",
                                  "checkpoints/step_00000030.pt", "samples/step_00000030.png", "new.png",
                                  "samples/new.png", "exports"])
def test_the_runs_own_files_are_never_a_target(run, capsys, what, name):
    target = run.path / name
    before = _fingerprint(target) if target.exists() else None
    for force in ((), ("--force",)):
        err = _refused(capsys, str(run.path), what, "--out", str(target), *force)
        assert "run folder" in err or "folder" in err
    assert (_fingerprint(target) if target.exists() else None) == before


def test_a_path_into_the_run_through_dot_dot_or_a_link_is_the_run_too(run, tmp_path, capsys):
    before = _fingerprint(run.config_path)
    link = tmp_path / "elsewhere"
    link.symlink_to(run.path)
    for out in (run.exports_dir / ".." / "config.json", link / "config.json"):
        _refused(capsys, str(run.path), "csv", "--out", str(out), "--force")
    assert _fingerprint(run.config_path) == before


def test_a_hard_link_to_the_runs_config_is_not_an_exports_file(run, tmp_path, capsys):
    alias = tmp_path / "alias.csv"
    os.link(run.config_path, alias)
    before = _fingerprint(run.config_path)
    _refused(capsys, str(run.path), "csv", "--out", str(alias), "--force")
    assert _fingerprint(run.config_path) == before and _fingerprint(alias) == before


def _special_files(tmp_path: Path) -> list[Path]:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "target.png")
    found = [fifo, folder, link]
    if os.geteuid() == 0:  # a device node of our own with /dev/full's numbers (1, 7): as root, as the issue found
        device = tmp_path / "full"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        found.append(device)
    return found


@pytest.mark.parametrize("what", WHATS)
def test_a_device_pipe_folder_or_link_is_never_written_over(run, tmp_path, capsys, what):
    for special in _special_files(tmp_path):
        before = _fingerprint(special)
        for force in ((), ("--force",)):
            _refused(capsys, str(run.path), what, "--out", str(special), *force)
        assert _fingerprint(special) == before, special
    assert not (tmp_path / "target.png").exists()  # the link's target was not made either


def test_dev_full_stays_a_device(run, capsys):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    before = _fingerprint(Path("/dev/full"))
    for what in WHATS:
        _refused(capsys, str(run.path), what, "--out", "/dev/full", "--force")
    assert _fingerprint(Path("/dev/full")) == before and stat.S_ISCHR(before[0])


@pytest.mark.parametrize("what, name", [("grid", "g.png"), ("gif", "g.gif"), ("csv", "m.csv")])
def test_force_replaces_a_file_the_same_export_wrote_and_nothing_else(run, tmp_path, capsys, what, name):
    out = tmp_path / name
    assert main(["export", str(run.path), what, "--out", str(out)]) == 0
    _refused(capsys, str(run.path), what, "--out", str(out))  # exists: not without --force
    assert main(["export", str(run.path), what, "--out", str(out), "--force"]) == 0
    other = {"grid": "gif", "gif": "csv", "csv": "grid"}[what]  # a file of another kind is not replaced
    before = _fingerprint(out)
    _refused(capsys, str(run.path), other, "--out", str(out), "--force")
    assert _fingerprint(out) == before


def test_force_does_not_replace_a_png_gan_tui_did_not_write(run, tmp_path, capsys):
    picture = tmp_path / "photo.png"
    Image.new("L", (8, 8), 200).save(picture)
    before = _fingerprint(picture)
    err = _refused(capsys, str(run.path), "grid", "--out", str(picture), "--force")
    assert "not a png that gan-tui export wrote" in err
    assert _fingerprint(picture) == before


def test_default_names_under_exports_are_replaced_as_the_dashboard_exports_again(run):
    first = export_grid(run, scale=2)
    assert export_grid(run, scale=2) == first  # the dashboard's `e p` twice
    assert export_csv(run)[0] == export_csv(run)[0]
    stranger = run.exports_dir / "metrics.csv"
    stranger.unlink()
    stranger.write_text("not ours\n")
    with pytest.raises(ExportRefused):
        export_csv(run)
    assert stranger.read_text() == "not ours\n"
    stranger.unlink()


def test_samples_keep_refusing_an_existing_path_and_the_runs_folders(run, tmp_path, capsys):
    existing = tmp_path / "file"
    existing.write_text("x")
    _refused(capsys, str(run.path), "samples", "--count", "2", "--out", str(existing))
    assert existing.read_text() == "x"
    for inside in (run.checkpoints_dir, run.samples_dir, run.path / "digits"):
        before = sorted(p.name for p in inside.iterdir()) if inside.exists() else None
        _refused(capsys, str(run.path), "samples", "--count", "2", "--out", str(inside), "--force")
        assert (sorted(p.name for p in inside.iterdir()) if inside.exists() else None) == before
    folder = tmp_path / "digits"
    assert main(["export", str(run.path), "samples", "--count", "2", "--out", str(folder)]) == 0
    _refused(capsys, str(run.path), "samples", "--count", "2", "--out", str(folder))  # its PNGs exist now
    assert main(["export", str(run.path), "samples", "--count", "2", "--out", str(folder), "--force"]) == 0
    (folder / "sample_0001.png").unlink()
    Image.new("L", (28, 28)).save(folder / "sample_0001.png")  # someone else's file in the folder
    _refused(capsys, str(run.path), "samples", "--count", "2", "--out", str(folder), "--force")


@pytest.mark.parametrize(
    "argv,says",
    [
        (["grid", "--scale", "0"], "scale must be from 1 to 32, got 0"),
        (["gif", "--scale", "0"], "scale must be from 1 to 32, got 0"),
        (["gif", "--frame-ms", "-5"], "frame-ms must be from 20 to 60,000, got -5"),
        (["samples", "--seed", "-1"], "seed must be 0 or more, got -1"),
        (["grid", "--step", "15"], "no grid at step 15; the nearest saved grids are at steps 10 and 20"),
        (["samples", "--checkpoint", "77"], "no checkpoint '77'"),
        (["samples", "--step", "10"], "--step does not apply to samples"),
        (["csv", "--count", "5", "--digit", "3"], "--count and --digit do not apply to csv"),
        (["grid", "--step", "10", "--digit", "3"], "--step does not apply to a grid of one --digit"),
        (["gif", "--out", "/nonexistent-gan-tui/dir/a.gif"], "/nonexistent-gan-tui/dir is not a folder"),
        (["samples", "--out", "/nonexistent-gan-tui/dir"], "/nonexistent-gan-tui is not a folder"),
    ],
)
def test_a_value_out_of_range_an_option_it_would_ignore_or_a_missing_folder_is_refused(run, capsys, argv, says):
    """Each was once taken (exit 0): --scale 0 as the default, --frame-ms -5 as a GIF without delays,
    --step beside --digit ignored, folders made for a mistyped --out."""
    err = _refused(capsys, str(run.path), *argv)
    assert says in err, err
    assert not Path("/nonexistent-gan-tui").exists()
