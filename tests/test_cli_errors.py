"""Every user error through ``otalign.cli.main`` exits with status 2 and one line naming the argument; never a
traceback. Interrupts and diverged runs get their own one-line messages."""

import logging

import pytest
import torch

from otalign import cli
from otalign.cli import main


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = ["--epochs", "1", "--subset", "200", "--batch-size", "64", "--hidden-dim", "32", "--feature-dim", "16",
        "--projection-dim", "8", "--iterations", "3", "--quiet"]


def _files(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "bad.toml").write_text('method = "infonce\nepochs = 2\n')
    (tmp_path / "bad.json").write_text('{"method": "infonce",}')
    (tmp_path / "list.json").write_text('[1, 2]')



def _run_then_break_its_checkpoint(tmp_path, name, content):
    """The folder of the run that ``train --out FOLDER --device cpu TINY`` makes (trained, not evaluated), whose
    checkpoint then went bad."""
    from otalign.training.config import FIELDS, load_config
    from otalign.training.experiment import train

    folder = tmp_path / name
    args = cli.build_parser().parse_args(["train", "--out", str(folder), "--device", "cpu", *TINY])
    train(load_config(None, {field: getattr(args, field) for field in FIELDS}))
    (folder / "checkpoint.pt").write_bytes(content)


# (argv with {tmp} for the test's folder, text the one-line message must contain)
BAD_INVOCATIONS = [
    (["train", "--device", "cuda:99", "--out", "{tmp}/run", *TINY], "device"),
    (["train", "--device", "tpu", "--out", "{tmp}/run", *TINY], "device"),
    (["train", "--out", "{tmp}/a-file", "--device", "cpu", *TINY], "out"),
    (["train", "--out", "{tmp}/a-file/run", "--device", "cpu", *TINY], "out"),
    (["train", "--config", "{tmp}/bad.toml", "--device", "cpu"], "bad.toml"),
    (["train", "--config", "{tmp}/bad.json", "--device", "cpu"], "bad.json"),
    (["train", "--config", "{tmp}/list.json", "--device", "cpu"], "list.json"),
    (["train", "--config", "{tmp}/missing.toml"], "missing.toml"),
    (["train", "--seed", str(2**70), "--device", "cpu"], "seed"),
    (["train", "--seed", "-1", "--device", "cpu"], "seed"),
    (["train", "--epochs", "0", "--device", "cpu"], "epochs"),
    (["train", "--lr", "nan", "--device", "cpu"], "lr"),
    (["train", "--lr", "1e30", "--device", "cpu"], "lr"),
    (["train", "--weight-decay", "nan", "--device", "cpu"], "weight_decay"),
    (["train", "--weight-decay", "inf", "--device", "cpu"], "weight_decay"),
    (["train", "--momentum", "nan", "--device", "cpu"], "momentum"),
    (["train", "--temperature", "inf", "--device", "cpu"], "temperature"),
    (["train", "--method", "nope", "--device", "cpu"], "method"),
    (["train", "--out", "{tmp}/corrupt", "--device", "cpu", *TINY], "checkpoint.pt"),
    (["train", "--out", "{tmp}/empty", "--device", "cpu", *TINY], "checkpoint.pt"),
    (["demo", "--epochs", "0", "--out", "{tmp}/demo"], "--epochs"),
    (["demo", "--epochs", "-3", "--out", "{tmp}/demo"], "--epochs"),
    (["demo", "--seeds", "0", "--out", "{tmp}/demo"], "--seeds"),
    (["demo", "--workers", "0", "--out", "{tmp}/demo"], "--workers"),
    (["demo", "--methods", ",", "--out", "{tmp}/demo"], "methods"),
    (["demo", "--methods", "nope", "--out", "{tmp}/demo"], "method"),
    (["demo", "--out", "{tmp}/a-file"], "out"),
]


@pytest.mark.parametrize("argv, named", BAD_INVOCATIONS, ids=[" ".join(a[:3]) for a, _ in BAD_INVOCATIONS])
def test_user_errors_exit_2_with_one_line_naming_the_argument(tmp_path, capsys, argv, named):
    _files(tmp_path)
    if "{tmp}/corrupt" in argv:
        _run_then_break_its_checkpoint(tmp_path, "corrupt", b"\x80\x04garbage")
    if "{tmp}/empty" in argv:
        _run_then_break_its_checkpoint(tmp_path, "empty", b"")
    capsys.readouterr()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"otalign {argv[0]}: error: ") and named in last, err
    if not last.split("error: ", 1)[1].startswith("argument "):  # argparse's own errors come after a usage line
        assert err.count("\n") == 1, err


def test_the_checkpoint_error_says_how_to_recover(tmp_path, capsys):
    _run_then_break_its_checkpoint(tmp_path, "corrupt", b"\x80\x04garbage")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "corrupt"), "--device", "cpu", *TINY])
    err = capsys.readouterr().err
    assert str(tmp_path / "corrupt" / "checkpoint.pt") in err and "--no-resume" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_user_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--device", "cuda", "--out", str(tmp_path), *TINY])
    assert exit_info.value.code == 2 and "device" in capsys.readouterr().err


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_in_train_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import otalign.training.experiment as experiment

    monkeypatch.setattr(experiment, "run_experiment", _interrupt)
    argv = ["train", "--out", str(tmp_path / "run"), "--device", "cpu", *TINY]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert "same command" in err and str(tmp_path / "run") in err


def test_ctrl_c_without_resume_says_it_restarts(tmp_path, capsys, monkeypatch):
    import otalign.training.experiment as experiment

    monkeypatch.setattr(experiment, "run_experiment", _interrupt)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path), "--no-resume", "--device", "cpu", *TINY])
    assert exit_info.value.code == 130 and "from scratch" in capsys.readouterr().err


def test_ctrl_c_in_demo(tmp_path, capsys, monkeypatch):
    import otalign.training.demo as demo

    monkeypatch.setattr(demo, "run_demo", _interrupt)
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--quick", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 130 and "Traceback" not in err and "interrupted" in err


def test_a_diverged_run_exits_1_with_one_line(tmp_path, capsys, monkeypatch):
    import otalign.training.experiment as experiment

    def diverge(*args, **kwargs):
        raise FloatingPointError("loss: infonce returned nan at epoch 1, step 2; try a lower lr")

    monkeypatch.setattr(experiment, "run_experiment", diverge)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path), "--device", "cpu", *TINY])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1 and "lower lr" in err


def test_cli_logs_epochs_to_stderr_unless_logging_is_configured(tmp_path, capsys, monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in a fresh interpreter: nobody configured logging
    before = list(logging.getLogger("otalign").handlers), logging.getLogger("otalign").level
    assert main(["train", "--out", str(tmp_path), "--device", "cpu", "--epochs", "3", "--stop-after", "2",
                 *TINY[2:-1]]) == 0
    err = capsys.readouterr().err
    assert "epoch 1/3" in err and "epoch 2/3" in err  # stderr is not a terminal here: one line per epoch
    after = logging.getLogger("otalign").handlers, logging.getLogger("otalign").level
    assert after == before  # the CLI undoes its logging set-up when it returns


def test_cli_leaves_configured_logging_alone(tmp_path, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="otalign"):
        assert main(["train", "--out", str(tmp_path), "--device", "cpu", "--epochs", "3", "--stop-after", "2",
                     *TINY[2:-1]]) == 0
    assert "epoch 2/3" not in capsys.readouterr().err
    assert [r.name for r in caplog.records if "epoch" in r.getMessage()] == ["otalign.training.trainer"] * 2


def test_no_module_configures_logging_globally():
    from pathlib import Path

    import otalign

    roots = [Path(otalign.__file__).parent, Path(otalign.solvers.__file__).parent]
    offenders = [str(p) for root in roots for p in root.rglob("*.py") if "basicConfig" in p.read_text()]
    assert offenders == []
    assert cli.__name__ == "otalign.cli"


def _terminate(*args, **kwargs):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGTERM)
    raise AssertionError("SIGTERM did not stop the run")


def test_sigterm_in_train_exits_143_with_the_resume_hint(tmp_path, capsys, monkeypatch):
    import signal

    import otalign.training.experiment as experiment

    monkeypatch.setattr(experiment, "run_experiment", _terminate)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "run"), "--device", "cpu", *TINY])
    assert exit_info.value.code == 143
    err = capsys.readouterr().err
    assert "terminated (SIGTERM)" in err and "same command" in err and err.count("\n") == 1
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is restored


def test_a_few_label_probe_larger_than_a_class_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(out), "--device", "cpu", "--eval-labels-per-class", "500", *TINY])
    assert exit_info.value.code == 2
    assert "eval_labels_per_class: 500 labels per class, but class" in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists()  # no epoch was trained
