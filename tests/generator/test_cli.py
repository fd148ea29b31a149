"""The ``mmgenrec`` console script: every stage's help, unknown stages, lazy imports."""

import subprocess
import sys

import pytest

from genrec.cli import STAGES, main


def test_help_lists_every_stage(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for stage in STAGES:
        assert f"  {stage} " in out


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_shows_its_own_help(stage, capsys):
    assert main([stage, "--help"]) == 0
    assert "usage:" in capsys.readouterr().out.lower()


def test_unknown_stage_and_no_stage_are_errors(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown stage 'trian'" in err and len(err.strip().splitlines()) == 1
    assert main([]) == 2


def test_a_stage_runs_with_its_arguments_and_index_never_imports_the_generator():
    code = ("import sys; from genrec.cli import main; rc = main(['index', '--help']); "
            "bad = [m for m in ('transformers', 'genrec.training', 'genrec.model') if m in sys.modules]; "
            "print(rc, bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-m", "genrec.cli", "baselines", "train", "--model", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2


def test_the_same_setting_has_the_same_flag_in_the_generator_and_the_baselines():
    from genrec.baselines.cli import build_parser as baselines_parser
    from genrec.training import build_parser

    both = ["--budget-minutes", "3", "--threads", "1", "--grad-clip", "0.5"]
    other = ["--time-budget-minutes", "3", "--num-threads", "1", "--max-grad-norm", "0.5"]
    for argv in (both, other):
        ns = build_parser("finetune").parse_args(argv)
        assert (ns.time_budget_minutes, ns.num_threads, ns.max_grad_norm) == (3.0, 1, 0.5)
        bs = baselines_parser().parse_args(["train", "--model", "sasrec", "--dataset", "X", *argv])
        assert (bs.time_budget_minutes, bs.num_threads, bs.max_grad_norm) == (3.0, 1, 0.5)


def test_one_field_name_per_setting_and_earlier_names_still_read():
    import dataclasses

    from genrec.baselines.settings import apply_overrides
    from genrec.baselines.trainer import TrainConfig as BaselineConfig
    from genrec.training import TrainConfig as GeneratorConfig
    from genrec.utils.fields import RENAMED, canonical
    from index.config import TrainConfig as QuantizerTrainConfig
    from index.train import build_parser as index_parser

    names = [{f.name for f in dataclasses.fields(c)} for c in (GeneratorConfig, BaselineConfig, QuantizerTrainConfig)]
    assert not any(old in n for n in names for old in RENAMED)  # no config keeps an earlier name
    assert apply_overrides(BaselineConfig(), "sasrec", ["grad_clip=0.5", "max_len=7"]).max_grad_norm == 0.5
    q = QuantizerTrainConfig.from_dict({"datasets": ["X"], "grad_clip": 1.0, "threads": 2, "eval_every": 3})
    assert (q.max_grad_norm, q.num_threads, q.eval_every_epochs) == (1.0, 2, 3)
    ns = index_parser().parse_args(["--grad-clip", "2", "--threads", "1", "--eval-every", "4"])
    assert (ns.max_grad_norm, ns.num_threads, ns.eval_every_epochs) == (2.0, 1, 4)
    with pytest.raises(ValueError, match="both grad_clip and max_grad_norm"):
        canonical({"grad_clip": 1, "max_grad_norm": 2}, "cfg.json")
