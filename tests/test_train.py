"""pcrl_lib.train and pcrl_lib.precision with a tiny but real stand-in method (tests/_train_worker.py)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _train_worker import TinyImages, TinyMethod, tiny_config, tiny_views
from pcrl_lib.env import seed_everything
from pcrl_lib.precision import CPU_AUTO, make_precision, resolve_precision
from pcrl_lib.pretrain_cli import build_parser, config_from_args, main
from pcrl_lib.train import CosineDecay, EpochBatchSampler, Trainer, TrainingInterrupted, pretrain
from pcrl_lib.training import SEED_STREAMS, NonFiniteLossError, derive_seed

WORKER = Path(__file__).with_name("_train_worker.py")
REPO = WORKER.parent.parent


class Crash(Exception):
    pass


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny convolutions: thread start-up costs more than it saves (30x slower with 2 threads on 2 cores).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TupleMethod(TinyMethod):
    """Breaks the interface: returns a (loss, parts) tuple instead of a StepOutput."""

    def forward(self, sample, generator):
        out = super().forward(sample, generator)
        return out.loss, out.parts


def _trainer(out, *, method=None, cfg=None, **kw) -> Trainer:
    seed_everything(0)  # the stand-in's queue starts from torch's global RNG, like a real method's
    return Trainer(method or TinyMethod(), TinyImages(), tiny_views, cfg or tiny_config(), out, spatial_dims=2,
                   seed=0, device="cpu", progress=False, **kw)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------------------------------- precision
def test_resolve_precision_on_cpu():
    assert resolve_precision("cpu", "auto") == CPU_AUTO
    assert resolve_precision("cpu", "fp32") == "fp32"
    assert resolve_precision(torch.device("cpu"), "bf16") == "bf16"
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("cpu", "fp16")
    with pytest.raises(ValueError, match="precision='half'"):
        resolve_precision("cpu", "half")
    with pytest.raises(ValueError, match="meta"):
        resolve_precision("meta", "bf16")


def test_precision_autocast_switch():
    x, w = torch.randn(4, 8), torch.randn(8, 2)
    fp32 = make_precision("cpu", "fp32")
    with fp32.autocast():
        assert (x @ w).dtype == torch.float32
    assert not fp32.grad_scaler().is_enabled()
    bf16 = make_precision("cpu", "bf16")
    with bf16.autocast():
        assert (x @ w).dtype == torch.bfloat16
    assert not bf16.needs_scaler


# ------------------------------------------------------------------------------------------- data order
def test_epoch_batch_sampler_order_resume_and_shards():
    a = list(EpochBatchSampler(22, 4, seed=3, epoch=0))
    assert len(a) == 5 and all(len(b) == 4 for b in a) and len({i for b in a for i in b}) == 20
    assert a == list(EpochBatchSampler(22, 4, seed=3, epoch=0))
    assert a != list(EpochBatchSampler(22, 4, seed=3, epoch=1))
    assert list(EpochBatchSampler(22, 4, seed=3, epoch=0, start_batch=2)) == a[2:]
    assert len(list(EpochBatchSampler(22, 4, seed=3, epoch=0, max_steps=2))) == 2
    shards = [list(EpochBatchSampler(22, 4, seed=3, epoch=0, rank=r, world_size=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 2
    flat = [set(i for b in s for i in b) for s in shards]
    assert not flat[0] & flat[1]
    with pytest.raises(ValueError, match="start_batch"):
        EpochBatchSampler(22, 4, seed=3, epoch=0, start_batch=6)


def test_cosine_decay_per_epoch():
    decay = CosineDecay(4)
    assert decay(0) == 1.0
    assert decay(2) == pytest.approx(0.5)
    assert decay(1) > decay(2) > decay(3) > 0


# ------------------------------------------------------------------------------------------- training
def test_fit_writes_checkpoints_history_and_encoder(tmp_path):
    trainer = _trainer(tmp_path, cfg=tiny_config(epochs=2, log_every=3))
    history = trainer.fit()
    assert trainer.step == 8 and trainer.epoch == 2
    assert [r["step"] for r in history] == [3, 4, 6, 8]  # every 3rd step plus each epoch's last
    assert set(history[0]["parts"]) == {"recon", "hybrid", "nce"}
    assert history[0]["lr"] == pytest.approx(0.05) and history[-1]["lr"] == pytest.approx(0.025)
    assert all(r["samples_per_s"] > 0 and math.isfinite(r["loss"]) for r in history)
    ckpt_dir = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["config.json", "epoch_001.pt", "epoch_002.pt",
                                                          "last.json", "last.pt"]
    state = torch.load(ckpt_dir / "last.pt", weights_only=True)
    assert state["step"] == 8 and state["config"]["pretrain"]["epochs"] == 2 and len(state["rng"]) == 1
    assert set(state["rng"][0]["generators"]) == {"views", "method"}
    assert "queue" in state["method"] and "encoder_k.0.weight" in state["method"]
    assert torch.load(ckpt_dir / "epoch_001.pt", weights_only=True)["step"] == 4
    assert json.loads((tmp_path / "history.json").read_text()) == history
    sidecar = json.loads((tmp_path / "encoder.json").read_text())
    assert sidecar["finished"] and sidecar["steps"] == 8 and sidecar["final_parts"] == history[-1]["parts"]
    encoder = torch.load(tmp_path / "encoder.pt", weights_only=True)
    _assert_same_state(encoder["encoder"], trainer.method.encoder_q.state_dict())


def test_training_reduces_reconstruction_loss(tmp_path):
    history = _trainer(tmp_path, cfg=tiny_config(epochs=4, lr=0.02)).fit()
    recon = [r["parts"]["recon"] for r in history]
    assert sum(recon[-4:]) < 0.5 * sum(recon[:4])


def test_in_process_crash_then_resume_is_bit_identical(tmp_path):
    reference = _trainer(tmp_path / "ref")
    reference.fit()

    def crash_at_6(record):
        if record["step"] == 6:
            raise Crash

    crashed = _trainer(tmp_path / "run", checkpoint_every_steps=1, on_step=crash_at_6)
    with pytest.raises(Crash):
        crashed.fit()
    resumed = _trainer(tmp_path / "run", checkpoint_every_steps=1)
    resumed.load_checkpoint()
    assert (resumed.step, resumed.epoch, resumed.batch_in_epoch) == (5, 1, 1)
    resumed.fit()
    _assert_same_state(resumed.method.state_dict(), reference.method.state_dict())
    _assert_same_state(resumed.optimizer.state_dict()["state"][0], reference.optimizer.state_dict()["state"][0])
    strip = [{k: v for k, v in r.items() if k != "samples_per_s"} for r in reference.history]
    assert [{k: v for k, v in r.items() if k != "samples_per_s"} for r in resumed.history] == strip


def _checkpoint_step(out: Path) -> int:
    try:
        return json.loads((out / "checkpoints" / "last.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    cmd = [sys.executable, str(WORKER)]
    ref = subprocess.Popen(cmd + [str(tmp_path / "ref")], env=env)
    run = tmp_path / "run"
    victim = subprocess.Popen(cmd + [str(run), "--delay", "0.3"], env=env)
    try:
        deadline = time.monotonic() + 30
        while _checkpoint_step(run) < 5 and victim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL
        killed_at = _checkpoint_step(run)
        assert 5 <= killed_at < 8, "the worker was not killed mid-run"
        assert not (run / "encoder.json").exists()
        assert subprocess.run(cmd + [str(run)], env=env, timeout=60).returncode == 0
        assert ref.wait(timeout=60) == 0
    finally:
        for proc in (ref, victim):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    a = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "ref" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 8
    _assert_same_state(a["method"], b["method"])
    _assert_same_state(a["optimizer"]["state"][0], b["optimizer"]["state"][0])
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]


def test_nonfinite_loss_stops_with_step_and_parts_and_keeps_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, method=TinyMethod(nan_at_call=3), checkpoint_every_steps=1)
    with pytest.raises(NonFiniteLossError, match=r"step 3 .*recon=.*nce=") as info:
        trainer.fit()
    assert info.value.step == 3 and set(info.value.parts) == {"recon", "hybrid", "nce"}
    assert info.value.checkpoint == tmp_path / "checkpoints" / "last.pt"
    assert torch.load(info.value.checkpoint, weights_only=True)["step"] == 2
    assert [r["step"] for r in json.loads((tmp_path / "history.json").read_text())] == [1, 2]
    assert not (tmp_path / "encoder.json").exists()


def test_pretrain_reuses_finished_run_and_force_retrains(tmp_path):
    cfg = tiny_config(epochs=1)
    first = pretrain(TinyMethod(), TinyImages(), tiny_views, cfg, tmp_path, spatial_dims=2, device="cpu",
                     progress=False)
    assert not first.reused and first.steps == 4 and first.encoder_path.is_file()
    mtime = first.encoder_path.stat().st_mtime_ns
    again = pretrain(TinyMethod(), TinyImages(), tiny_views, cfg.override(num_workers=1), tmp_path,
                     spatial_dims=2, device="cpu", progress=False)
    assert again.reused and again.history == first.history and again.final_parts == first.final_parts
    _assert_same_state(again.method.state_dict(), first.method.state_dict())
    assert first.encoder_path.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match=r"epochs: 1 -> 2.*force=True"):
        pretrain(TinyMethod(), TinyImages(), tiny_views, cfg.override(epochs=2), tmp_path, spatial_dims=2,
                 device="cpu", progress=False)
    forced = pretrain(TinyMethod(), TinyImages(), tiny_views, cfg.override(epochs=2), tmp_path, spatial_dims=2,
                      device="cpu", progress=False, force=True)
    assert not forced.reused and forced.steps == 8


def test_resume_refuses_other_config_and_resume_false_restarts(tmp_path):
    def crash_at_2(record):
        if record["step"] == 2:
            raise Crash

    trainer = _trainer(tmp_path, checkpoint_every_steps=1, on_step=crash_at_2)
    with pytest.raises(Crash):
        trainer.fit()
    with pytest.raises(ValueError, match=r"lr: 0.05 -> 0.1"):
        pretrain(TinyMethod(), TinyImages(), tiny_views, tiny_config(lr=0.1), tmp_path, spatial_dims=2,
                 device="cpu", progress=False)
    fresh = pretrain(TinyMethod(), TinyImages(), tiny_views, tiny_config(), tmp_path, spatial_dims=2,
                     device="cpu", progress=False, resume=False)
    assert fresh.steps == 8 and [r["step"] for r in fresh.history] == list(range(1, 9))


def test_resume_on_another_device_type_warns_and_keeps_fresh_generators(tmp_path):
    _trainer(tmp_path, cfg=tiny_config(epochs=1)).fit()
    last = tmp_path / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["device_type"] = "cuda"  # as if written on a GPU box: CUDA generator states do not fit a CPU one
    torch.save(state, last)
    fresh = _trainer(tmp_path, cfg=tiny_config(epochs=1))
    seeded = fresh.generators["views"].get_state()
    with pytest.warns(UserWarning, match="written on cuda"):
        fresh.load_checkpoint()
    assert fresh.step == 4 and torch.equal(fresh.generators["views"].get_state(), seeded)


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(TinyMethod(), TinyImages(n=3), tiny_views, tiny_config(), tmp_path, spatial_dims=2, device="cpu")
    with pytest.raises(ValueError, match="spatial_dims"):
        Trainer(TinyMethod(), TinyImages(), tiny_views, tiny_config(), tmp_path, spatial_dims=4, device="cpu")
    with pytest.raises(TypeError, match="momentum_update"):
        Trainer(torch.nn.Linear(2, 2), TinyImages(), tiny_views, tiny_config(), tmp_path, spatial_dims=2)
    with pytest.raises(ValueError, match="precision='fp16'"):
        Trainer(TinyMethod(), TinyImages(), tiny_views, tiny_config(precision="fp16"), tmp_path, spatial_dims=2,
                device="cpu")
    with pytest.raises(TypeError, match="StepOutput"):
        Trainer(TupleMethod(), TinyImages(), tiny_views, tiny_config(), tmp_path, spatial_dims=2,
                device="cpu", progress=False).fit()


def test_bf16_autocast_training_runs_on_cpu(tmp_path):
    trainer = _trainer(tmp_path, cfg=tiny_config(epochs=1, precision="bf16", max_steps_per_epoch=2))
    history = trainer.fit()
    assert trainer.precision.name == "bf16" and len(history) == 2 and math.isfinite(history[-1]["loss"])


def test_workers_give_the_same_weights_as_the_main_process(tmp_path):
    a = _trainer(tmp_path / "a", cfg=tiny_config(epochs=1, max_steps_per_epoch=2))
    a.fit()
    b = _trainer(tmp_path / "b", cfg=tiny_config(epochs=1, max_steps_per_epoch=2, num_workers=1))
    b.fit()
    _assert_same_state(a.method.state_dict(), b.method.state_dict())


def test_cli_config_and_errors(tmp_path, capsys):
    args = build_parser().parse_args(["--dim", "3", "--profile", "smoke", "--data", "x", "--output-dir", "y",
                                      "-p", "epochs", "3", "-p", "cube_size", "[64, 64, 32]", "-p", "nce", "infonce"])
    cfg = config_from_args(args)
    assert (cfg.epochs, cfg.cube_size, cfg.nce, cfg.K) == (3, (64, 64, 32), "infonce", 64)
    bad = build_parser().parse_args(["--dim", "2", "--data", "x", "--output-dir", "y", "-p", "epoch", "3"])
    with pytest.raises(KeyError, match="epochs"):
        config_from_args(bad)
    assert main(["--dim", "2", "--data", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err


def test_python_m_pcrl_lib_train_is_still_the_command_line(tmp_path):
    # The documented command; the CLI itself lives in pcrl_lib.pretrain_cli.
    done = subprocess.run([sys.executable, "-m", "pcrl_lib.train", "--dim", "2", "--data", str(tmp_path / "missing"),
                           "--output-dir", str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "--data" in done.stderr and "missing" in done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun not installed")
def test_torchrun_ddp_two_ranks_on_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(WORKER), str(tmp_path),
                           "--epochs", "1"], env=env, timeout=90, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 2 and state["config"]["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["generators"]["views"], state["rng"][1]["generators"]["views"])
    ranks = [torch.load(tmp_path / f"rank_{r}.pt", weights_only=True) for r in (0, 1)]
    for name, _ in TinyMethod().named_parameters():  # DDP keeps the trained parameters in step
        assert torch.equal(ranks[0][name], ranks[1][name]), name


# ------------------------------------------------------------------------------ with the kit's real modules
class _RawItems(torch.utils.data.Dataset):
    """``n`` fixed random raw items of ``shape`` (2D images (1, S, S) or 3D crop pairs (2, 1, X, Y, Z))."""

    def __init__(self, shape, n=4):
        self.items = torch.rand(n, *shape, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _real_3d_trainer(out, **kw):
    from pcrl_lib.pcrl import build_method
    from pcrl_lib.transforms import PCRLViews3D

    torch.manual_seed(0)
    method = build_method("pcrl", 3, width=4, K=16, n_data=4)
    cfg = tiny_config(batch_size_3d=2, lr=0.01)
    return Trainer(method, _RawItems((2, 1, 16, 16, 8)), PCRLViews3D(n_blocks=50), cfg, out, spatial_dims=3,
                   seed=0, device="cpu", progress=False, **kw)


def test_real_pcrl_3d_resumes_bit_identically(tmp_path):
    reference = _real_3d_trainer(tmp_path / "ref")
    reference.fit()

    def crash_at_4(record):
        if record["step"] == 4:
            raise Crash

    with pytest.raises(Crash):
        _real_3d_trainer(tmp_path / "run", checkpoint_every_steps=1, on_step=crash_at_4).fit()
    resumed = _real_3d_trainer(tmp_path / "run")
    resumed.load_checkpoint()
    assert (resumed.step, resumed.epoch, resumed.batch_in_epoch) == (3, 1, 1)
    resumed.fit()
    _assert_same_state(resumed.method.state_dict(), reference.method.state_dict())  # incl. queue and Z
    assert set(reference.history[-1]["parts"]) >= {"nce_a", "mse_a_hyb", "mse_b_hyb"}


def test_real_pcrl_2d_two_steps_and_export_loads(tmp_path):
    from pcrl_lib.models.exports import load_encoder
    from pcrl_lib.pcrl import build_method
    from pcrl_lib.transforms import PCRLViews2D

    torch.manual_seed(0)
    method = build_method("pcrl", 2, K=16, n_data=4)
    cfg = tiny_config(epochs=1, batch_size_2d=2, lr=0.01, image_size_2d=32)
    result = pretrain(method, _RawItems((1, 32, 32)), PCRLViews2D(size=32), cfg, tmp_path, spatial_dims=2,
                      device="cpu", progress=False)
    assert result.steps == 2 and all(math.isfinite(v) for v in result.final_parts.values())
    encoder = load_encoder(result.encoder_path)
    _assert_same_state(encoder.state_dict(), method.encoder_q.state_dict())


def test_cli_trains_on_a_prepared_image_cache_then_reuses(tmp_path, capsys):
    argv = ["--dim", "2", "--profile", "smoke", "--data", str(_image_cache(tmp_path / "images")), "--output-dir",
            str(tmp_path / "run"), "--device", "cpu", "--no-progress", "-p", "image_size_2d", "32",
            "-p", "batch_size_2d", "2", "-p", "max_steps_per_epoch", "1"]
    assert main(argv) == 0
    assert "trained: 1 steps" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "encoder.json").read_text())["method"] == "pcrl"
    assert main(argv) == 0
    assert "reused: 1 steps" in capsys.readouterr().out


# ------------------------------------------------------------------------- CLI: seeding, kill, Ctrl-C, lock
def _image_cache(folder: Path) -> Path:
    import numpy as np
    from PIL import Image

    from pcrl_lib.data.cache import prepare_image_cache

    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        paths.append(folder / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(paths[-1])
    prepare_image_cache(paths, folder / "cache", size=32, progress=False)
    return folder / "cache"


def _cli_args(out: Path, cache: Path, checkpoint_every_steps: int = 1) -> list[str]:
    return ["--dim", "2", "--profile", "smoke", "--data", str(cache), "--output-dir", str(out), "--device", "cpu",
            "--no-progress", "--seed", "3", "--checkpoint-every-steps", str(checkpoint_every_steps),
            "-p", "image_size_2d", "32", "-p", "batch_size_2d", "2", "-p", "max_steps_per_epoch", "2",
            "-p", "epochs", "2"]


def _default_sigint() -> None:
    # CI may run the suite with SIGINT ignored (a background job); a child inherits that, and Python then never
    # raises KeyboardInterrupt. The user's Ctrl-C reaches a foreground process with the default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(flag: Path, proc: subprocess.Popen, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{flag.name} did not appear within {limit_s} s"
        time.sleep(0.05)


def test_cli_is_seeded_and_kill_or_ctrl_c_then_resume_equals_an_uninterrupted_run(tmp_path, capsys):
    """Two identical commands give bit-identical weights; a SIGKILL or a Ctrl-C (SIGINT) during a checkpoint
    write, then the same command again, gives the same weights; Ctrl-C prints one line and no traceback.
    (The lock check and the reruns call ``main`` in this process: no interpreter start-up to wait for.)"""
    cache = _image_cache(tmp_path / "images")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}

    def start(name: str, pause_at: int = 0) -> subprocess.Popen:
        cmd = [sys.executable, str(WORKER), "cli", str(pause_at), str(tmp_path / f"{name}.flag"), "--"]
        # The uninterrupted runs checkpoint at epoch ends only (a 2D state is ~160 MB): checkpoints draw no
        # random numbers, so they cannot change the weights.
        every = 1 if pause_at else 0
        return subprocess.Popen(cmd + _cli_args(tmp_path / name, cache, every), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)

    # torch.save calls with a checkpoint every step: last.pt after steps 1, 2, 3, 4, then encoder.pt; the 3rd
    # is step 3's checkpoint.
    procs = {name: start(name, pause) for name, pause in (("a", 0), ("b", 0), ("killed", 3), ("stopped", 3))}
    try:
        _wait_for(tmp_path / "killed.flag", procs["killed"])
        # While it is paused it holds the folder's lock: a second run there fails at once, naming its PID.
        capsys.readouterr()
        assert main(_cli_args(tmp_path / "killed", cache)) == 2
        err = capsys.readouterr().err
        assert f"is in use by another run (PID {procs['killed'].pid})" in err and len(err.strip().splitlines()) == 1
        procs["killed"].send_signal(signal.SIGKILL)
        assert procs["killed"].wait(timeout=120) == -signal.SIGKILL
        _wait_for(tmp_path / "stopped.flag", procs["stopped"])
        procs["stopped"].send_signal(signal.SIGINT)
        _, err = procs["stopped"].communicate(timeout=300)
        assert procs["stopped"].returncode == 130, err
        assert err.strip() == "interrupted at step 3 (last checkpoint: step 2); resume with the same command"
        for name in ("a", "b"):
            _, err = procs[name].communicate(timeout=300)
            assert procs[name].returncode == 0, err
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    interrupted = torch.load(tmp_path / "stopped" / "checkpoints" / "last.pt", weights_only=True)
    assert interrupted["step"] == 2  # the write Ctrl-C cut short left the previous checkpoint intact
    assert not [p.name for p in (tmp_path / "stopped" / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    for name in ("killed", "stopped"):  # the same command again resumes and finishes
        assert main(_cli_args(tmp_path / name, cache)) == 0, capsys.readouterr().err
    reference = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    assert reference["step"] == 4
    for name in ("b", "killed", "stopped"):
        state = torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)
        _assert_same_state(state["method"], reference["method"])
        assert [r["loss"] for r in state["history"]] == [r["loss"] for r in reference["history"]], name


def test_cli_output_dir_that_is_a_file_is_one_line_exit_2(tmp_path, capsys):
    cache = _image_cache(tmp_path / "images")
    target = tmp_path / "taken"
    target.write_text("a file")
    assert main(_cli_args(target, cache)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a file" in err and str(target) in err


def test_pretrain_refuses_a_folder_it_did_not_create_even_with_force(tmp_path):
    (tmp_path / "history.json").write_text("my own notes")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "mine.txt").write_text("keep me")
    for force in (False, True):
        with pytest.raises(ValueError, match="holds files the kit did not write"):
            pretrain(TinyMethod(), TinyImages(), tiny_views, tiny_config(epochs=1), tmp_path, spatial_dims=2,
                     device="cpu", progress=False, force=force)
    assert (tmp_path / "history.json").read_text() == "my own notes"
    assert (tmp_path / "checkpoints" / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "history.json"]  # no marker, no lock


def test_pretrain_marks_its_folder_and_force_clears_only_run_files(tmp_path):
    first = pretrain(TinyMethod(), TinyImages(), tiny_views, tiny_config(epochs=1), tmp_path, spatial_dims=2,
                     device="cpu", progress=False)
    assert json.loads((tmp_path / ".pcrl-run.json").read_text())["kind"] == "pretrain"
    (tmp_path / "notes.txt").write_text("a user's note in the run folder")
    forced = pretrain(TinyMethod(), TinyImages(), tiny_views, tiny_config(epochs=1), tmp_path, spatial_dims=2,
                      device="cpu", progress=False, force=True)
    assert not forced.reused and forced.steps == first.steps
    assert (tmp_path / "notes.txt").is_file()


def test_interrupt_during_a_checkpoint_write_names_the_step_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, checkpoint_every_steps=1)
    real_save, calls = torch.save, [0]

    def ctrl_c_on_third_save(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return real_save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", ctrl_c_on_third_save)
    with pytest.raises(KeyboardInterrupt, match=r"^interrupted at step 3 \(last checkpoint: step 2\)") as info:
        trainer.fit()
    assert isinstance(info.value, TrainingInterrupted) and info.value.checkpoint_step == 2
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["config.json", "last.json", "last.pt"]


def test_seed_streams_are_independent():
    streams = list(SEED_STREAMS)
    seeds = [derive_seed(7, s, *idx) for s in streams for idx in [(), (0,), (1,), (2,), (0, 0), (1, 0), (0, 1)]]
    assert len(set(seeds)) == len(seeds)
    # The old salt layout made the epoch-1 data order equal the views of rank 0: named streams never meet.
    assert derive_seed(0, "data_order", 1) != derive_seed(0, "views", 0)
    assert derive_seed(0, "data_order", 1) != derive_seed(0, "data_order", 1, 0)  # trailing zeros count
    assert derive_seed(0, "views", 0) != derive_seed(1, "views", 0)
    assert all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError, match="unknown seed stream 'view'"):
        derive_seed(0, "view")
