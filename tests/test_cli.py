import argparse
import json
import subprocess
import sys

import pytest
import torch

from otalign.cli import main


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = ["--epochs", "2", "--subset", "200", "--batch-size", "64", "--hidden-dim", "32", "--feature-dim", "16",
        "--projection-dim", "8", "--iterations", "3", "--device", "cpu", "--quiet"]


def test_train_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--modality", "images", "--dataset", "digits", "--method", "gca_uot", "--encoder", "mlp",
                 "--corrupt-severity", "3", "--seed", "0", "--out", str(out), *TINY]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert 0 <= printed["probe_few"] <= 1 and 0 <= printed["knn"] <= 1
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["method"] == "gca_uot" and results["config"]["corrupt_severity"] == 3
    assert len(results["history"]) == 2
    assert set(results["evaluation"]) == {"probe_full", "probe_few", "knn", "alignment", "uniformity", "wdm"}
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    for name in ("checkpoint.pt", "loss.png", "plan.png"):
        assert (out / name).stat().st_size > 0, name


def test_train_from_a_toml_config_with_a_flag_override(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(f'method = "byol"\nepochs = 5\nout = "{(tmp_path / "byol").as_posix()}"\n')
    assert main(["train", "--config", str(config), *TINY]) == 0  # TINY sets --epochs 2
    results = json.loads((tmp_path / "byol" / "results.json").read_text())
    assert results["config"]["method"] == "byol" and len(results["history"]) == 2
    assert not (tmp_path / "byol" / "plan.png").exists()  # BYOL solves no plan


def test_train_rejects_bad_settings(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--method", "nope", "--out", str(tmp_path), *TINY])
    assert exit_info.value.code == 2
    assert "method" in capsys.readouterr().err


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "report.md" in printed and "GCAUOT" in printed
    assert "14 runs (12 training runs, 2 evaluations of the untrained encoder)" in printed  # the counter's total
    report = (out / "report.md").read_text()
    for heading in ("## clean", "## corrupted"):
        assert heading in report
    for label in ("InfoNCE", "GCAInfoNCE", "RINCE", "GCARINCE", "GCAUOT", "BYOL", "untrained encoder"):
        assert f"| {label} |" in report
    for figure in ("accuracy.png", "knn.png", "loss_clean.png", "loss_corrupted.png", "plans_clean.png",
                   "plans_corrupted.png"):
        assert (out / figure).stat().st_size > 0 and f"]({figure})" in report
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == {"clean", "corrupted"}
    entry = results["results"]["corrupted"]["gca_uot"]
    assert entry["mean"]["probe_few"] == pytest.approx(sum(entry["per_seed"]["probe_few"]) / 1)


def test_console_script_help():
    done = subprocess.run([sys.executable, "-m", "otalign.cli", "demo", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "--quick" in done.stdout and "--seeds" in done.stdout


def test_train_leave_one_domain_out_with_a_domain_prior_and_another_solver(tmp_path, capsys):
    out = tmp_path / "lodo"
    assert main(["train", "--dataset", "digits-domains", "--method", "gca_infonce", "--target", "domain-prior",
                 "--alpha", "0.1", "--beta", "0", "--held-out-domain", "2", "--solver", "proximal",
                 "--solver-option", "inner_iter=2", "--out", str(out), *TINY]) == 0
    evaluation = json.loads((out / "results.json").read_text())["evaluation"]
    assert {"domain_probe", "in_domain", "cross_domain", "cross_domain/2", "held_out_domain",
            "seen_domains_cross_domain"} <= set(evaluation)
    assert evaluation["held_out_domain"] == evaluation["cross_domain/2"] and evaluation["held_out_domain_id"] == 2
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["solver_options"] == {"inner_iter": 2} and config["held_out_domain"] == 2
    run = json.loads((out / "run.json").read_text())
    assert "target" in run and run["config"]["held_out_domain"] == 2  # the config as a JSON object


def test_train_with_a_custom_target_callable(tmp_path, capsys):
    out = tmp_path / "custom"
    target = "tests.training.test_target_rules:custom_target"
    assert main(["train", "--dataset", "digits-domains", "--method", "gca_infonce", "--target", target,
                 "--out", str(out), *TINY]) == 0
    assert json.loads((out / "run.json").read_text())["target"].startswith(target + "@")


@pytest.mark.parametrize("flags, message", [
    (["--method", "byol", "--target", "labels"], "target: method 'byol' cannot use --target labels"),
    (["--alpha", "0.3"], "alpha: only used with --target domain-prior"),
    (["--solver-option", "nonsense"], "expected KEY=VALUE"),
    (["--target", "domain-prior", "--alpha", "1"], "needs a dataset with domains"),
])
def test_train_flag_errors_name_the_flag(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "x"), *TINY, *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_version_flag(capsys):
    import otalign

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"otalign {otalign.__version__}"


def test_python_dash_m_otalign_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "otalign", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("otalign ")


def test_every_flag_has_real_help():
    """Each flag's help says more than its own name: every config field has a FLAG_HELP entry, and no help text is
    the field name with spaces (the old "--q Q  q (default None)")."""
    from otalign.cli import FLAG_HELP, build_parser
    from otalign.training.config import FIELDS

    assert set(FIELDS) <= set(FLAG_HELP), sorted(set(FIELDS) - set(FLAG_HELP))
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, sub in commands.choices.items():
        for action in sub._actions:
            if action.dest == "help":
                continue
            text = (action.help or "").split(" (default")[0].strip()
            assert len(text.split()) >= 3, f"{command} {action.option_strings}: help {action.help!r}"
            assert text != action.dest.replace("_", " "), f"{command} {action.option_strings}"
    train_help = commands.choices["train"].format_help()
    assert "default None" not in train_help and "(default: the method's own)" in train_help


def test_top_level_help_does_not_import_torch():
    code = ("import sys\nfrom otalign.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'otalign --help imported torch'\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr


def test_train_help_lists_every_modality_s_datasets(capsys):
    from otalign.training.modality import available_modalities, get_modality

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in available_modalities():
        for dataset in get_modality(name).datasets:
            assert dataset in text, (name, dataset)
    assert "runs that module's code" in text
