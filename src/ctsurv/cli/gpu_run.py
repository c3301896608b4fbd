"""``ctsurv gpu-run --gpus N -- COMMAND ...``: run a command inside GPU slots."""

from __future__ import annotations

import argparse
import subprocess

from .checks import non_negative_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gpu-run",
        help="run a command holding N distinct GPUs (sets CUDA_VISIBLE_DEVICES)",
        description="Hold N GPUs that no other ctsurv job on this machine holds, then run COMMAND.",
    )
    p.add_argument("--gpus", type=non_negative_int, default=1, help="number of devices (default 1; 0 runs without a GPU)")
    p.add_argument("--lock-dir", default=None, help="lock directory shared by all jobs on this machine")
    p.add_argument("--allow-cpu", action="store_true", help="run on the CPU when the machine has no GPU")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..errors import CtsurvError
    from ..gpu import gpu_slots

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise CtsurvError("no command given; usage: ctsurv gpu-run --gpus N -- COMMAND ...")
    from .checks import check_outputs

    check_outputs(folders=[("--lock-dir", args.lock_dir)])
    import shutil

    if shutil.which(cmd[0]) is None:
        raise CtsurvError(f"command '{cmd[0]}' not found (not on PATH, or not an executable file); check its name")
    with gpu_slots(args.gpus, lock_dir=args.lock_dir, allow_cpu=args.allow_cpu):
        return subprocess.run(cmd, check=False).returncode
