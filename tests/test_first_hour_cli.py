"""The first hour on the command line (issue 25), as real processes: a typo gets a "did you mean",
every mistake of the user's is one line and exit status 2 (before torch where it can be known), a
fallback run says why on its start line, a run that ends before its judge says so last."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.test_cli import ROOT, gan_tui


# ------------------------------------------------------------------ typos
@pytest.mark.parametrize(
    "args,line",
    [
        (["--lr-gg", "1e-3"], "gan-tui: unrecognized argument --lr-gg; did you mean --lr-g? (see --help)"),
        (["--lr-gg=1e-3"], "gan-tui: unrecognized argument --lr-gg; did you mean --lr-g? (see --help)"),
        (["--datset", "mnist"], "gan-tui: unrecognized argument --datset; did you mean --dataset? (see --help)"),
        (["lss"], "gan-tui: 'lss' is not a subcommand; did you mean gan-tui ls? (see --help)"),
        (["comapre", "a", "b"], "gan-tui: 'comapre' is not a subcommand; did you mean gan-tui compare? (see --help)"),
        (["ls", "--runs-dirr", "x"], "gan-tui ls: unrecognized argument --runs-dirr; did you mean --runs-dir? (see --help)"),
        (["--amp", "bf15"], "did you mean bf16?"),
        (["export", "somewhere", "grdi"], "did you mean grid?"),
        # An abbreviation is a typo too: argparse would take it, until a new flag made it mean another.
        (["--headles"], "gan-tui: unrecognized argument --headles; did you mean --headless? (see --help)"),
        (["ls", "--jso"], "gan-tui ls: unrecognized argument --jso; did you mean --json? (see --help)"),
        (["--headless", "--detach"], "gan-tui: argument --detach: not allowed with argument --headless (see --help)"),
        (["sweep", "--trials", "2", "--paralel", "2", "--headless"],
         "gan-tui sweep: unrecognized argument --paralel; did you mean --parallel? (see --help)"),
    ],
)
def test_a_typo_gets_the_nearest_flag_subcommand_or_choice(args, line):
    result = gan_tui(*args, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and line in lines[0], result.stderr


def test_help_and_version_answer_as_people_type_them():
    for args, start in ((["help"], "usage: gan-tui [-h] [--version]"), (["help", "ls"], "usage: gan-tui ls"),
                        (["--version"], "gan-tui ")):
        result = gan_tui(*args, timeout=60)
        assert result.returncode == 0 and result.stdout.startswith(start), (args, result.stdout[:200], result.stderr)


def test_a_word_near_nothing_gets_no_guess():
    result = gan_tui("--zzzzqqq", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "gan-tui: unrecognized arguments: --zzzzqqq (see --help)"


def test_typos_are_answered_without_importing_torch():
    code = (
        "import sys\n"
        "from tui_gan.cli import main\n"
        "for args in (['--lr-gg', '1'], ['lss']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 2, exc.code\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60, capture_output=True)
