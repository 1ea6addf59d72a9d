"""The command line: --version, short options, defaults in help, help speed, HMVNET_* validation, weights."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from hmvnet import __version__
from hmvnet.app import parsers
from hmvnet.app.cli import SUBCOMMANDS, main
from hmvnet.errors import InputError

HEAVY = ("torch", "monai", "SimpleITK", "scipy", "pandas", "matplotlib")


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hmvnet {__version__}"


def test_every_subcommand_has_a_light_parser():
    assert set(parsers.PARSERS) == set(SUBCOMMANDS)


@pytest.mark.parametrize("name", sorted(parsers.PARSERS))
def test_help_states_defaults_without_rst_or_doubled_percent(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and "`" not in text and "%%" not in text
    parser = parsers.PARSERS[name]()
    formatter = parser.formatter_class(prog="x")
    for action in parser._actions:
        if action.default not in (None, False, "==SUPPRESS==") and action.help:
            assert "default" in formatter._get_help_string(action), action.dest


def test_short_input_output_options():
    args = parsers.predict_parser().parse_args(["-i", "in", "-o", "out", "-f", "0", "2", "--disable-tta"])
    assert (str(args.input), str(args.output), args.folds, args.tta) == ("in", "out", [0, 2], False)
    args = parsers.process_parser().parse_args(["-i", "a", "-o", "b"])
    assert (str(args.input), str(args.output), args.folds, args.tta) == ("a", "b", None, None)
    args = parsers.evaluate_parser().parse_args(["-i", "p", "--gt", "g", "-o", "r.json"])
    assert (str(args.pred), str(args.out)) == ("p", "r.json")
    with pytest.raises(SystemExit):
        parsers.predict_parser().parse_args(["-i", "a", "-o", "b", "-f", "x"])


def test_help_parsers_import_nothing_heavy_and_answer_fast():
    """``hmvnet train-seg --help`` in a fresh interpreter: under 1 s, and none of the heavy libraries imported."""
    code = (
        "import sys, time; t = time.perf_counter(); from hmvnet.app.cli import main\n"
        "try:\n    main(['train-seg', '--help'])\nexcept SystemExit:\n    pass\n"
        f"print(time.perf_counter() - t, [m for m in {HEAVY!r} if m in sys.modules])"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - start
    seconds, heavy = out.strip().splitlines()[-1].split(" ", 1)
    assert heavy == "[]", heavy
    assert float(seconds) < 1.0 and wall < 5.0  # interpreter start-up included in wall; loaded machine


def test_constants_match_their_modules():
    from hmvnet.app.pipeline import OUTPUT_PROFILES
    from hmvnet.app.serve import DEFAULT_PORT
    from hmvnet.synthetic.cohort import SIZES

    assert set(parsers.OUTPUT_CHOICES) == set(OUTPUT_PROFILES)
    assert parsers.SYNTH_SIZES == SIZES and parsers.DEFAULT_PORT == DEFAULT_PORT


def test_hmvnet_outputs_environment_variable_is_validated(monkeypatch):
    monkeypatch.setenv(parsers.ENV_OUTPUTS, "Segmentation ")
    assert parsers.default_outputs() == "segmentation"
    monkeypatch.setenv(parsers.ENV_OUTPUTS, "everything")
    with pytest.raises(InputError, match="HMVNET_OUTPUTS='everything'"):
        parsers.default_outputs()


def test_unknown_hmvnet_outputs_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(parsers.ENV_OUTPUTS, "everything")
    assert main(["process", "-i", str(tmp_path), "-o", str(tmp_path / "o")]) == 2


def test_weights_path_and_verify(tiny_weights, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HMVNET_WEIGHTS", raising=False)
    assert main(["weights", "--weights", str(tiny_weights), "--path", "--verify"]) == 0
    out = capsys.readouterr().out
    assert f"in use: {tiny_weights}" in out and "FAILED" not in out
    bad = tmp_path / "w"
    import shutil

    shutil.copytree(tiny_weights, bad)
    weight = next((bad / "segmentation").glob("*.safetensors"))
    weight.write_bytes(weight.read_bytes()[:-1] + b"\0")
    assert main(["weights", "--weights", str(bad), "--verify"]) == 1
    assert f"FAILED   segmentation/{weight.name}: sha256" in capsys.readouterr().out


def test_missing_weights_error_names_every_location(tmp_path, monkeypatch):
    from hmvnet.app.pipeline import Pipeline
    from hmvnet.data.weights import search_locations
    from hmvnet.errors import WeightsError

    monkeypatch.delenv("HMVNET_WEIGHTS", raising=False)
    monkeypatch.setattr("hmvnet.data.weights.SHIPPED_WEIGHTS", tmp_path / "none")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError) as error:
        Pipeline.load()
    for where, folder in search_locations():
        assert str(folder) in str(error.value) and where in str(error.value)
    assert len(search_locations()) == 3


def test_third_party_info_noise_is_silenced():
    import logging

    from hmvnet.app.cli import configure_logging

    configure_logging()
    assert logging.getLogger("numexpr").getEffectiveLevel() == logging.WARNING


def test_log_lines_name_their_case(caplog):
    import logging

    from hmvnet.app.case_log import case_context, install_case_filter

    install_case_filter()
    with caplog.at_level(logging.INFO):
        with case_context("CHUM-007"):
            logging.getLogger("hmvnet.test").info("inside")
        logging.getLogger("hmvnet.test").info("outside")
    prefixes = [r.case_prefix for r in caplog.records]
    assert prefixes[0] == "[CHUM-007] " and prefixes[-1] == ""
