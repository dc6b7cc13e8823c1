"""Command lines and SLURM scripts from GUI settings (``napari_spatimeinr.workflows.jobs``), and ``--set``."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from napari_spatimeinr.cli import build_parser, main, train_config_of
from napari_spatimeinr.core.config import RenderConfig, TrainConfig
from napari_spatimeinr.core.errors import SpatimeINRError
from napari_spatimeinr.workflows import jobs

ODD = '/data/my movies/it\'s "odd" $HOME `x`; rm -rf ~'


def _parse(line: str):
    argv = shlex.split(line)
    assert argv[0] == "spatimeinr"
    return build_parser().parse_args(argv[1:])


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"method": "cubic", "device": "cpu", "seed": 3},
        {
            "preset": "paper",
            "steps": 7,
            "time_limit": 12.5,
            "checkpoint_every": 10,
            "params": {"lr": 1e-3, "mlp_width": 64, "residual": False, "sr_axes": "TZ"},
        },
        {"params": {"motion": True, "spatial": False, "spatial_share": 0.25}},
    ],
)
def test_train_command_round_trips_the_config(values):
    cfg = TrainConfig.model_validate(values)
    argv = jobs.train_argv(f"{ODD}/in.tif", f"{ODD}/m.spatimeinr", cfg)
    line = jobs.command_line(argv)
    assert shlex.split(line) == argv
    args = _parse(line)
    assert args.input == [f"{ODD}/in.tif"] and args.output == f"{ODD}/m.spatimeinr"
    assert train_config_of(args) == cfg
    warm = jobs.train_argv(f"{ODD}/in.tif", f"{ODD}/m.spatimeinr", cfg, init_from=f"{ODD}/a m")
    assert _parse(jobs.command_line(warm)).init_from == f"{ODD}/a m"
    # only what differs from the defaults is written
    assert ("--set" in argv) == bool({"checkpoint_every", "params"} & set(values))


def test_train_command_read_options_and_defaults_left_out():
    argv = jobs.train_argv(
        "a b.tif",
        "m",
        TrainConfig(),
        axes="TYX",
        voxel_size=(1.0, 0.2, 0.125),
        frame_interval=30.0,
    )
    args = _parse(jobs.command_line(argv))
    assert args.axes == "TYX" and args.voxel_size == [1.0, 0.2, 0.125]
    assert args.frame_interval == 30.0
    assert argv[-6:] == ["--voxel-size", "1", "0.2", "0.125", "--frame-interval", "30"]
    assert not any(a in argv for a in ("--method", "--preset", "--device", "--seed", "--set"))


def test_render_command_round_trips_the_settings():
    s = RenderConfig(
        scale_t=4,
        scale_z=2.5,
        t_range=(1.0, 3.0),
        roi=(0, 4, 2, 20, 0, 24),
        dtype="uint16",
        keep_measured=True,
    )
    line = jobs.command_line(jobs.render_argv(f"{ODD}/m.spatimeinr", f"{ODD}/o.ome.tif", s))
    args = _parse(line)
    assert args.model_dir == f"{ODD}/m.spatimeinr" and args.output == f"{ODD}/o.ome.tif"
    assert (args.scale_t, args.scale_z, args.scale_y, args.scale_x) == (4.0, 2.5, None, None)
    assert args.t_range == [1.0, 3.0] and args.roi == [0, 4, 2, 20, 0, 24]
    assert args.dtype == "uint16" and args.keep_measured and args.scheduler is None
    plain = jobs.render_argv("m", "o.zarr")
    assert plain[:3] == ["spatimeinr", "render", plain[2]] and len(plain) == 5


def test_render_command_has_uncertainty_only_when_asked():
    s = RenderConfig(scale_t=4)
    plain = jobs.render_argv(f"{ODD}/m", f"{ODD}/o.tif", s)
    assert "--uncertainty" not in plain and _parse(jobs.command_line(plain)).uncertainty is None
    argv = jobs.render_argv(f"{ODD}/m", f"{ODD}/o.tif", s, uncertainty=f"{ODD}/o_unc.tif")
    args = _parse(jobs.command_line(argv))
    assert args.uncertainty == f"{ODD}/o_unc.tif" and args.output == f"{ODD}/o.tif"
    # the job asks for time for both passes (the map is a second pass over the grid)
    one = jobs.render_resources((5, 4, 256, 256), s, voxels_per_second=1e4)
    two = jobs.render_resources((5, 4, 256, 256), s, voxels_per_second=1e4, uncertainty=True)
    margin = jobs.TIME_MARGIN_S
    assert two.seconds - margin == pytest.approx(2 * (one.seconds - margin))
    assert any("uncertainty map" in n for n in two.notes)


def test_file_axes_follows_a_relabelled_layer():
    assert jobs.file_axes("TZYX", "TZYX", "TYX") == "TYX"  # as the reader read it
    assert jobs.file_axes("TZYX", "ZTYX", "TYX") == "ZYX"  # the user says T is really Z
    assert jobs.file_axes("TZYX", "tzyx", "ZTYX") == "ZTYX"
    assert jobs.file_axes("ZYX", "TYX", None) == "TYX"  # a layer holding the file as stored
    with pytest.raises(SpatimeINRError, match="dimensions"):
        jobs.file_axes("TZYX", "TYX", "TZYX")


def _bash_n(tmp_path, text):
    path = tmp_path / "job.sbatch"
    path.write_text(text)
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_train_script_passes_bash_n_and_holds_the_command(tmp_path):
    cfg = TrainConfig(time_limit=600, device="cuda", params={"lr": 0.001})
    argv = jobs.train_argv(f"{ODD}/in.tif", f"{ODD}/m", cfg, voxel_size=(2.0, 0.5, 0.5))
    res = jobs.train_resources((20, 30, 256, 256), cfg)
    text = jobs.slurm_script(argv, res, job_name="spatimeinr-train-it's")
    _bash_n(tmp_path, text)
    assert jobs.command_line(argv) in text.splitlines()
    assert "#SBATCH --gres=gpu:1" in text
    assert "#SBATCH --time=00:30:00" in text  # 600 s × 1.5 + 15 min
    assert f"#SBATCH --mem={res.slurm_mem}" in text and res.memory_bytes > jobs.BASE_MEMORY_BYTES
    assert "#SBATCH --job-name=spatimeinr-train-it_s" in text
    auto = jobs.slurm_script(argv, jobs.train_resources((2, 1, 8, 8), TrainConfig()))
    assert "--gres" not in auto.replace("'--gres=gpu:1'", "")  # only the hint, no request
    assert "#SBATCH --time=1-00:00:00" in auto  # no time limit: a day


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_large_render_script_starts_a_dask_cluster(tmp_path):
    s = RenderConfig(scale_t=4, scale_z=4, scale_y=2, scale_x=2)
    argv = jobs.render_argv(f"{ODD}/m.spatimeinr", f"{ODD}/o.zarr", s)
    small = jobs.render_resources((5, 4, 32, 32), s, model_bytes=10**6)
    assert small.nodes == 1
    text = jobs.slurm_script(argv, small)
    _bash_n(tmp_path, text)
    assert jobs.command_line(argv) in text.splitlines() and "--scheduler" not in text
    big = jobs.render_resources((200, 100, 1024, 1024), s, train_device="cuda", output="o.zarr")
    assert big.nodes > 1 and big.gpus == 1 and not any(".zarr" in n for n in big.notes)
    as_tif = jobs.render_resources((200, 100, 1024, 1024), s, output="o.ome.tif")
    assert as_tif.gpus == 0 and any(".zarr output" in n for n in as_tif.notes)
    text = jobs.slurm_script(argv, big, setup="module load python")
    _bash_n(tmp_path, text)
    assert f"#SBATCH --nodes={big.nodes}" in text and "#SBATCH --gres=gpu:1" in text
    assert f'{jobs.command_line(argv)} --scheduler "$SCHED"' in text
    assert "dask scheduler --scheduler-file" in text and "module load python" in text
    # a measured speed shortens the request
    fast = jobs.render_resources((200, 100, 1024, 1024), s, voxels_per_second=1e9)
    assert fast.nodes == 1 and fast.seconds < big.seconds


def test_write_job_script_never_replaces_silently(tmp_path):
    path = tmp_path / "a job.sbatch"
    jobs.write_job_script(path, "#!/bin/bash\n")
    with pytest.raises(SpatimeINRError, match="already exists"):
        jobs.write_job_script(path, "#!/bin/bash\necho new\n")
    assert path.read_text() == "#!/bin/bash\n"
    jobs.write_job_script(path, "#!/bin/bash\necho new\n", overwrite=True)
    assert "new" in path.read_text()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("foo=1", "has no field 'foo'"),
        ("params.nope=2", "params has no field 'nope'"),
        ("seed.x=1", "no fields below"),
        ("params.lr", "KEY=VALUE"),
        ("params.lr=abc", "params.lr"),
    ],
)
def test_set_refuses_bad_keys_in_one_line(tmp_path, capsys, item, message):
    code = main(["train", str(tmp_path / "none.tif"), "-o", str(tmp_path / "m"), "--set", item])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_set_overrides_config_file_and_flags_override_set(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\ncheckpoint_every: 5\nparams:\n  lr: 0.1\n")
    args = build_parser().parse_args(
        ["train", "x.tif", "-o", "m", "--config", str(cfg), "--set", "params.lr=0.01"]
        + ["--set", "seed=2", "--seed", "4"]
    )
    got = train_config_of(args)
    assert got.seed == 4 and got.checkpoint_every == 5 and got.params.lr == 0.01


def _run_script(script, tmp_path, **slurm):
    """Run a job script with bash as SLURM would, ``srun`` replaced by a shim that runs its
    command here (dropping srun's options)."""
    import os
    import sys
    import sysconfig
    from pathlib import Path

    import napari_spatimeinr

    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    (shim / "srun").chmod(0o755)
    env = dict(os.environ)
    src = str(Path(napari_spatimeinr.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    env["PATH"] = os.pathsep.join(
        [str(shim), sysconfig.get_path("scripts"), str(Path(sys.executable).parent), env["PATH"]]
    )
    env.update(SLURM_JOB_ID="42", SLURM_CPUS_PER_TASK="1", SLURM_SUBMIT_DIR=str(tmp_path), **slurm)
    return subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env=env, timeout=240
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_train_script_runs(tmp_path, small_stack):
    import tifffile

    folder = tmp_path / "it's here"
    folder.mkdir()
    stack = folder / "in put.tif"
    tifffile.imwrite(stack, small_stack.data, imagej=True, metadata={"axes": "TZYX"})
    cfg = TrainConfig(method="linear", seed=5)
    argv = jobs.train_argv(stack, folder / "m.spatimeinr", cfg, voxel_size=(2.0, 0.5, 0.5))
    script = folder / "train.sbatch"
    jobs.write_job_script(
        script, jobs.slurm_script(argv, jobs.train_resources((6, 5, 24, 20), cfg))
    )
    done = _run_script(script, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    from napari_spatimeinr import api

    md = api.open_model(folder / "m.spatimeinr")
    assert md.config == cfg and tuple(md.voxel_size) == (2.0, 0.5, 0.5)


@pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("dask") is None, reason="needs bash and dask"
)
def test_multi_node_render_script_runs_on_its_dask_cluster(tmp_path, small_stack):
    """The script starts a scheduler and workers (here on this machine, one 'node'), renders
    through them with --scheduler, stops them and removes the scheduler file."""
    from napari_spatimeinr import api

    model = tmp_path / "m it's.spatimeinr"
    list(api.train(small_stack, model, {"method": "cubic"}))
    out = tmp_path / "out x2.zarr"
    argv = jobs.render_argv(model, out, RenderConfig(scale_t=2))
    res = jobs.JobResources(seconds=600, memory_bytes=2**30, cpus=1, nodes=2)
    script = tmp_path / "render.sbatch"
    jobs.write_job_script(script, jobs.slurm_script(argv, res))
    done = _run_script(script, tmp_path, SLURM_NNODES="1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Rendering on dask cluster" in done.stderr
    assert api.read(out).shape == (11, 5, 24, 20)
    assert not list(tmp_path.glob("dask-scheduler-*.json"))
