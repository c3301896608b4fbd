"""A fake SLURM for tests: sbatch, squeue, sacct, scancel, srun, sinfo, scontrol on PATH.

It records every call (``$FAKE_SLURM_DIR/calls.jsonl``: tool, argv, and for srun the job id)
and runs what snakemake-executor-plugin-slurm submits, so a real ``snakemake --profile
profiles/slurm`` completes without a cluster:

* ``sbatch`` runs the job's ``--wrap`` command (or the script on stdin) in ``-D`` with the
  environment SLURM gives a job (``SLURM_JOB_ID``, ``SLURM_CPUS_PER_TASK``,
  ``SLURM_JOB_PARTITION``; with ``--gpus=N``: ``SLURM_GPUS`` and ``CUDA_VISIBLE_DEVICES``),
  output to ``--output`` with ``%j`` replaced, *before* it returns the job id: a scheduler
  with an instant, serial queue, so the test waits for no polling interval.
  ``FAKE_SLURM_FAIL=rule:k`` makes the first ``k`` submissions of ``rule`` end FAILED
  without running (a node that lost the job).
* ``sacct`` / ``squeue`` answer the status queries (``JobIdRaw|State`` by ``--name``) and
  the failure-reason query; account and node queries get empty answers.
* ``srun`` runs its command once in the job (records ``-n``, ``--gpus`` ...).
* ``sinfo -o %P`` lists partitions ``cpu`` and ``gpu``; ``scontrol show config`` a MinJobAge.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ.get("FAKE_SLURM_DIR", "/tmp/fake-slurm"))
# srun options that take a separate value (the rest are flags or --opt=value)
SRUN_VALUE_OPTS = {"-n", "-c", "-N", "-J", "-p", "-t", "--ntasks", "--cpus-per-task", "--nodes", "--jobid",
                   "--job-name", "--mem", "--gpus", "--partition", "--time"}


def record(tool: str, argv: list[str], **extra) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "calls.jsonl", "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps({"tool": tool, "argv": argv, **extra}) + "\n")


def jobs() -> dict[str, dict]:
    folder = STATE / "jobs"
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")} if folder.is_dir() else {}


def save(job: dict) -> None:
    (STATE / "jobs").mkdir(parents=True, exist_ok=True)
    tmp = STATE / "jobs" / f".{job['id']}.tmp"
    tmp.write_text(json.dumps(job), encoding="utf-8")
    tmp.replace(STATE / "jobs" / f"{job['id']}.json")


def options(argv: list[str]) -> dict[str, str]:
    """sbatch's options as {name: value} (``--x=v``, ``--x v``, ``-x v``)."""
    out, i = {}, 0
    flags = {"--parsable", "--export=ALL", "--requeue", "--no-requeue"}
    while i < len(argv):
        arg = argv[i]
        if arg in flags or not arg.startswith("-"):
            out[arg] = ""
            i += 1
        elif "=" in arg:
            key, value = arg.split("=", 1)
            out[key] = value
            i += 1
        else:
            out[arg] = argv[i + 1] if i + 1 < len(argv) else ""
            i += 2
    return out


def next_id() -> str:
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "counter", "a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        n = int(fh.read().strip() or 1000) + 1
        fh.seek(0)
        fh.truncate()
        fh.write(str(n))
    return str(n)


def should_fail(comment: str) -> bool:
    spec = os.environ.get("FAKE_SLURM_FAIL")
    if not spec:
        return False
    rule, count = spec.rsplit(":", 1)
    if not (comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_wildcards_")):
        return False
    failed = sum(1 for j in jobs().values() if j["comment"] == comment and j["state"] == "FAILED")
    return failed < int(count)


def sbatch(argv: list[str]) -> int:
    opts = options(argv)
    script = opts.get("--wrap")
    if script is None:
        script = sys.stdin.read()
    job_id = next_id()
    record("sbatch", argv, job_id=job_id)
    job = {"id": job_id, "name": opts.get("--job-name", ""), "comment": opts.get("--comment", ""),
           "partition": opts.get("-p", opts.get("--partition", "")), "state": "RUNNING"}
    save(job)
    if should_fail(job["comment"]):
        job["state"] = "FAILED"
        save(job)
        print(job_id)
        return 0
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(SLURM_JOB_ID=job_id, SLURM_JOBID=job_id, SLURM_JOB_NAME=job["name"],
               SLURM_JOB_PARTITION=job["partition"], SLURM_CPUS_PER_TASK=opts.get("--cpus-per-task", "1"))
    gpus = opts.get("--gpus")
    if gpus:
        env.update(SLURM_GPUS=gpus, CUDA_VISIBLE_DEVICES=",".join(str(i) for i in range(int(gpus))))
    log = opts.get("--output", str(STATE / "slurm-%j.log")).replace("%j", job_id)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        rc = subprocess.run(["/bin/sh", "-c", script], cwd=opts.get("-D") or None, env=env,
                            stdout=out, stderr=subprocess.STDOUT).returncode
    job["state"] = "COMPLETED" if rc == 0 else "FAILED"
    job["exit_code"] = rc
    save(job)
    print(job_id)
    return 0


def status(argv: list[str], fmt: str) -> int:
    record(fmt, argv)
    name = None
    for i, arg in enumerate(argv):
        if arg == "--name" and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--name="):
            name = arg.split("=", 1)[1]
    if fmt == "sacct" and name is None:
        if "-j" in argv and "--format=Reason" in argv:  # the failure reason of a job step
            job = jobs().get(argv[argv.index("-j") + 1].split(".")[0])
            if job and job["state"] == "FAILED" and argv[argv.index("-j") + 1].endswith(".0"):
                print("NonZeroExitCode" if "exit_code" in job else "NodeFail")
        return 0  # account and node queries: nothing known
    for job in jobs().values():
        if name is None or job["name"] == name:
            print(f"{job['id']}|{job['state']}")
    return 0


def scancel(argv: list[str]) -> int:
    record("scancel", argv)
    known = jobs()
    for arg in argv:
        if arg in known:
            known[arg]["state"] = "CANCELLED"
            save(known[arg])
    return 0


def srun(argv: list[str]) -> int:
    record("srun", argv, job_id=os.environ.get("SLURM_JOB_ID"))
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in SRUN_VALUE_OPTS else 1
    command = argv[i:]
    if not command:
        print("srun: fake: no command", file=sys.stderr)
        return 2
    os.execvp(command[0], command)
    return 127


def main(tool: str) -> int:
    argv = sys.argv[1:]
    if tool == "sbatch":
        return sbatch(argv)
    if tool in ("sacct", "squeue"):
        return status(argv, tool)
    if tool == "scancel":
        return scancel(argv)
    if tool == "srun":
        return srun(argv)
    record(tool, argv)
    if tool == "sinfo" and "%P" in " ".join(argv):
        print("PARTITION\ncpu*\ngpu")
    elif tool == "scontrol" and argv[:2] == ["show", "config"]:
        print("MinJobAge               = 300 sec\nMaxArraySize            = 1001")
    return 0  # sacctmgr, sshare: no accounts known


if __name__ == "__main__":
    sys.exit(main(sys.argv.pop(1)))
