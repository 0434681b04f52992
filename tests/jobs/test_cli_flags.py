"""Flags mean what they say: every `--help` shows each option's default and that default is
the code's (the config dataclasses, the job signatures); presets (`--quick`, `--preset`) fill
only what was not given; bad options are refused with one line and exit 2 before any model
is loaded and before any run directory is made; a run that would produce nothing is refused."""

from __future__ import annotations

import argparse
import inspect
import re

import pytest

from lst_jax import cli
from lst_jax.data.reference import DataRef
from lst_jax.jobs.connectivity import command
from lst_jax.jobs.connectivity.demos import BypassRunConfig, SyntheticRunConfig
from lst_jax.jobs.connectivity.job import BarrierRunConfig, DetectRunConfig
from lst_jax.jobs.iaside import command as iaside_command
from lst_jax.jobs.iaside.job import IasideConfig
from lst_jax.jobs.lst import command as lst_command
from lst_jax.jobs.lst.examples import WidthSettings
from lst_jax.jobs.lst.full_eval import FullEvalConfig
from lst_jax.jobs.lst.job import examples_job, pool_job
from lst_jax.traversal.config import PRESETS
from lst_jax.utils.cliargs import closest, format_default, option_actions

PARSER = cli.build_parser()


def parse(*argv):
    return PARSER.parse_args(list(argv))


def _subparsers(parser, path=()):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield path + (name,), sub
                yield from _subparsers(sub, path + (name,))


_SHOWN = re.compile(r"\(default: ([^;)]*)(?:; --quick: ([^)]*))?\)")


def test_every_option_of_every_subcommand_shows_its_default():
    missing = []
    for sub, action in option_actions(PARSER):
        # options without a value unless given (--folder, --data-dir) have nothing to show
        if action.required or (action.default is None and not _is_preset(sub, action)):
            continue
        if "default" not in (action.help or "").lower():
            missing.append(f"{sub.prog} {action.option_strings[0]}")
    assert not missing, f"options whose --help states no default: {missing}"
    for path, sub in _subparsers(PARSER):
        text = sub.format_help()                  # every help string formats
        assert "%(" not in text, path


def _is_preset(sub, action) -> bool:
    return action.dest in (sub.get_default("_preset_options") or {})


# flag -> the code's default, per subcommand (dataclasses and job signatures)
EX, POOL = inspect.signature(examples_job).parameters, inspect.signature(pool_job).parameters
FE, IA, W = FullEvalConfig(), IasideConfig(), WidthSettings()
BAR, DET, BYP, SYN = BarrierRunConfig(), DetectRunConfig(), BypassRunConfig(), SyntheticRunConfig()
CODE_DEFAULTS = {
    ("examples",): {"--model": EX["model"].default, "--data": EX["data"].default,
                    "--k": EX["k"].default, "--seed": EX["seed"].default,
                    "--plane-grid": EX["plane_grid"].default,
                    "--path-points": EX["path_points"].default,
                    "--plane-source": EX["plane_source"].default,
                    "--interpolation": DataRef().interpolation,
                    "--width-distances": W.radii, "--width-dirs": W.num_dirs},
    ("pool",): {"--min-conf": POOL["min_conf"].default, "--data": POOL["data"].default},
    ("full-eval",): {"--num-samples": FE.num_samples, "--rounds": FE.rounds,
                     "--batch-size": FE.batch_size, "--seed": FE.seed, "--grid": FE.grid,
                     "--grid-n": FE.grid_n, "--chunk-size": FE.chunk_size},
    ("iaside",): {"--bands": IA.num_bands, "--fill": IA.fill, "--post": IA.post,
                  "--normalize": IA.normalize, "--group-size": IA.group_size,
                  "--beta": IA.beta, "--seed": IA.seed, "--estimator": IA.estimator,
                  "--permutations": IA.num_permutations, "--data": IA.data},
    ("connectivity", "barrier"): {
        "--pairs-per-class": BAR.pairs_per_class, "--drop-per-class": BAR.drop_per_class,
        "--points": BAR.points, "--batch-size": BAR.batch_size, "--space": BAR.space,
        "--seed": BAR.seed, "--attack-steps": BAR.attack.steps, "--attack-lr": BAR.attack.lr,
        "--attack-tv": BAR.attack.tv_weight},
    ("connectivity", "detect"): {
        "--points": DET.points, "--batch-size": DET.batch_size, "--space": DET.space,
        "--seed": DET.seed, "--attacks": DET.attacks, "--features": DET.features,
        "--folds": DET.detector.folds, "--pgd-eps": DET.pgd.eps, "--pgd-steps": DET.pgd.steps,
        "--attack-steps": DET.attack.steps, "--attack-lr": DET.attack.lr,
        "--attack-tv": DET.attack.tv_weight},
    ("connectivity", "bypass"): {
        "--target-class": BYP.target_class, "--source-class": BYP.source_class,
        "--points": BYP.points,
        "--threshold": BYP.threshold, "--max-depth": BYP.max_depth, "--mode": BYP.bypass.mode,
        "--bypass-steps": BYP.bypass.steps, "--space": BYP.space,
        "--attack-steps": BYP.attack.steps, "--attack-lr": BYP.attack.lr,
        "--attack-tv": BYP.attack.tv_weight},
    ("connectivity", "synthetic"): {
        "--arch": SYN.arch, "--init-seed": SYN.init_seed, "--classes": SYN.classes,
        "--seeds": SYN.seeds, "--fvo-steps": SYN.fvo.steps, "--fvo-threshold": SYN.fvo.threshold,
        "--free-steps": SYN.free.steps, "--points": SYN.points, "--threshold": SYN.threshold,
        "--max-depth": SYN.max_depth},
}


@pytest.mark.parametrize("path", sorted(CODE_DEFAULTS), ids=" ".join)
def test_help_defaults_equal_code_defaults(path):
    sub = dict(_subparsers(PARSER))[path]
    actions = {a.option_strings[0]: a for a in sub._actions if a.option_strings}
    for flag, code in CODE_DEFAULTS[path].items():
        m = _SHOWN.search(actions[flag].help)
        assert m, f"{path} {flag}: no default in {actions[flag].help!r}"
        assert m.group(1) == format_default(code), (path, flag, m.group(1), code)
    # the bypass numbers the issue found wrong in --help (512 steps, TV 1e-8)
    if path == ("connectivity", "bypass"):
        assert "(default: 1024" in actions["--attack-steps"].help
        assert "(default: 1e-07)" in actions["--attack-tv"].help
        # the pair selection's defaults depend on the data (BypassRunConfig.resolved)
        assert BYP.candidates is None and BYP.selection is None
        assert "not given: 8 on the digits" in actions["--candidates"].help
        assert "not given: largest_gap on the digits" in actions["--selection"].help


def test_no_flags_build_exactly_the_default_configs():
    assert command.barrier_config(parse("connectivity", "barrier")) == BAR
    assert command.detect_config(parse("connectivity", "detect")) == DET
    assert command.bypass_config(parse("connectivity", "bypass")) == BYP
    assert command.synthetic_config(parse("connectivity", "synthetic")) == SYN
    assert iaside_command.iaside_config(parse("iaside", "--models", "x")) == IA
    assert lst_command.full_eval_config(parse("full-eval")) == FE
    args = parse("examples")
    assert lst_command.config_from_args(args) == PRESETS["paper"]
    for name in ("k", "seed", "plane_grid", "path_points", "plane_source", "model", "data"):
        assert getattr(args, name) == EX[name].default, name


def test_lst_preset_help_shows_each_presets_values():
    actions = {a.option_strings[0]: a for a in dict(_subparsers(PARSER))[("examples",)]._actions
               if a.option_strings}
    for flag in ("--iters", "--step-size", "--pthresh", "--noise", "--log-step"):
        field = flag[2:].replace("-", "_")
        for name, cfg in PRESETS.items():
            assert f"{name} {format_default(getattr(cfg, field))}" in actions[flag].help


def test_quick_fills_only_what_was_not_given():
    # the command: --quick replaced --points and --pairs-per-class
    cfg = command.barrier_config(parse("connectivity", "barrier", "--quick", "--points", "101",
                                       "--pairs-per-class", "3", "--attack-steps", "200"))
    assert (cfg.points, cfg.pairs_per_class, cfg.attack.steps) == (101, 3, 200)
    assert cfg.drop_per_class == command.QUICK["barrier"]["drop_per_class"]
    quick = command.barrier_config(parse("connectivity", "barrier", "--quick"))
    q = command.QUICK["barrier"]
    assert (quick.points, quick.pairs_per_class, quick.drop_per_class, quick.attack.steps) == \
        (q["points"], q["pairs_per_class"], q["drop_per_class"], q["attack_steps"])

    cfg = command.detect_config(parse("connectivity", "detect", "--quick", "--num-samples",
                                      "60", "--pgd-steps", "7"))
    assert (cfg.num_samples, cfg.pgd.steps) == (60, 7)
    assert (cfg.points, cfg.attack.steps) == (21, 40)

    cfg = command.bypass_config(parse("connectivity", "bypass", "--quick", "--bypass-steps",
                                      "50", "--attack-steps", "77"))
    assert (cfg.bypass.steps, cfg.attack.steps, cfg.points) == (50, 77, 21)
    assert cfg.attack.tv_weight == BYP.attack.tv_weight

    cfg = command.synthetic_config(parse("connectivity", "synthetic", "--quick", "--points",
                                         "33"))
    assert (cfg.points, cfg.segment_points, cfg.fvo.steps, cfg.free.steps) == (33, 33, 30, 30)

    # the LST presets: --preset sets what is not given, an explicit flag wins
    args = parse("examples", "--preset", "reference_defaults", "--iters", "7")
    assert lst_command.config_from_args(args) == PRESETS["reference_defaults"].replace(iters=7)


def test_closest_registry_names_by_words():
    from lst_jax.models.registry import REGISTRY

    assert closest("resnet_digits", REGISTRY)[0].startswith("digits_resnet-")
    assert closest("digits_resnet-normla", REGISTRY)[0] == "digits_resnet-normal"
    assert closest("zzz", REGISTRY) == []


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if any checkpoint is restored."""
    from lst_jax.models import registry

    monkeypatch.setattr(registry, "load_checkpoint",
                        lambda *a, **k: pytest.fail("a model was loaded"))


def _flat_folder(tmp_path):
    import numpy as np
    from PIL import Image

    d = tmp_path / "flat"
    d.mkdir()
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(d / f"im{i}.png")
    return d


BAD = {
    # item 7
    "barrier-classes": (["connectivity", "barrier", "--classes", "12", "--root", "{out}"],
                        "0..9"),
    "examples-k": (["examples", "--k", "11", "--out", "{out}"], "at most 10"),
    "examples-classes": (["examples", "--classes", "3", "10", "--out", "{out}"], "0..9"),
    "typo": (["examples", "--model", "resnet_digits", "--out", "{out}"],
             "did you mean digits_resnet-"),
    "barrier-typo": (["connectivity", "barrier", "--models", "digits_resnet-normal",
                      "resnet_digits", "--root", "{out}"], "did you mean digits_resnet-"),
    "iaside-flat-folder": (["iaside", "--models", "digits_resnet-normal", "--data", "folder",
                            "--folder", "{flat}", "--out", "{out}"], "no class subfolders"),
    "plane-source": (["examples", "--plane-source", "7", "--out", "{out}"], "0..4"),
    "plane-grid": (["examples", "--plane-grid", "0", "--out", "{out}"], ">= 1"),
    "path-points": (["examples", "--path-points", "1", "--out", "{out}"], ">= 2"),
    "bypass-class": (["connectivity", "bypass", "--target-class", "10", "--out", "{out}"],
                     "0..9"),
    "synthetic-class": (["connectivity", "synthetic", "--classes", "10", "--out", "{out}"],
                        "0..9"),
    "root-is-file": (["connectivity", "barrier", "--root", "{file}"], "is a file"),
    # item 6: runs that would produce nothing
    "barrier-drops-all": (["connectivity", "barrier", "--pairs-per-class", "2",
                           "--drop-per-class", "2", "--root", "{out}"], "every pair"),
    "quick-drops-all": (["connectivity", "barrier", "--quick", "--drop-per-class", "1",
                         "--root", "{out}"], "every pair"),
    "detect-too-few": (["connectivity", "detect", "--num-samples", "3", "--root", "{out}"],
                       "at least folds (5)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_options_one_line_exit_2_before_any_model_or_run_dir(case, tmp_path, capsys,
                                                                  no_model):
    argv, expected = BAD[case]
    file = tmp_path / "a_file"
    file.write_text("x")
    values = {"out": tmp_path / "run", "file": file,
              "flat": _flat_folder(tmp_path) if case == "iaside-flat-folder" else ""}
    assert cli.main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"lst-jax {argv[0]}: error: "), err
    assert expected in err, err
    assert not (tmp_path / "run").exists(), "a run directory was made"
    assert file.read_text() == "x"


def test_detect_never_claims_a_figure_it_did_not_write(tmp_path, monkeypatch, capsys):
    """A detect run whose attacks give no detector: exit 1, the reason, no ROC claimed."""
    from lst_jax.jobs.connectivity import job as jobs

    def no_detector(model, config, root, **kw):
        return {"run_dir": str(tmp_path), "n_clean": 5, "attacks": {"pgd": {
            "auroc": None, "accuracy": None, "n_adversarial": 0, "success_rate": 0.0,
            "note": "need at least 5 clean and 5 adversarial examples"}}}

    monkeypatch.setattr(jobs, "detect_model_run", no_detector)
    monkeypatch.setattr(jobs, "detect_table", lambda s: "| table |")
    assert cli.main(["connectivity", "detect", "--models", "digits_resnet-normal",
                     "--num-samples", "5", "--root", str(tmp_path / "r"), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert "detect_roc.png" not in out and "no ROC figure" in out
    assert "error:" in err and not (tmp_path / "r" / "figures" / "detect_roc.png").exists()


def test_percolation_quick_keeps_explicit_flags(monkeypatch):
    """experiments/percolation.py uses the same preset mechanism."""
    from experiments import percolation as perc

    seen = {}

    def stop(out, dims, sites, probs, seeds, **kw):
        seen.update(sites=sites, probs=list(probs), seeds=seeds)
        raise KeyboardInterrupt

    monkeypatch.setattr(perc, "run", stop)
    with pytest.raises(KeyboardInterrupt):
        perc.main(["--quick", "--sites", "5000", "--dims", "2"])
    assert seen == {"sites": 5000, "probs": list(perc.p_grid(12)), "seeds": 3}
