"""Waiting for a sweep's SLURM jobs (submitit) and reporting the ones that failed, with their logs' last lines.

submitit learns that a job ended from its result file, or from `sacct`. A cluster without accounting (no
slurmdbd) has no `sacct`: a job killed before it wrote a result (scancel, out of memory, a lost node) would then
look pending forever. So a job without a result also counts as ended once `squeue` lists it in a final state or
no longer lists it. Every job is waited for, then all failures are reported at once: the runs of the jobs that
finished are in the store (each written atomically by repro.runs.get), so sweeping again submits only the
missing runs.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

LOG_LINES = 12  # last lines of a failed job's log in the report
RESULT_GRACE_S = 10.0  # a result file may reach a shared file system after its job left the queue
_RUNNING = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "RESIZING", "REQUEUED", "REQUEUE_HOLD",
            "REQUEUE_FED", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}


class JobsFailed(RuntimeError):
    """Some jobs of a sweep failed; the message names each with its log's last lines."""


def _queue(job_ids: list[str]) -> dict[str, str] | None:
    """{job id: state} of the jobs squeue still lists (array tasks one by one), or None if squeue fails."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    try:
        out = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--format=%i %T",
                              f"--jobs={','.join(arrays)}"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:  # (all of them purged: none listed)
        return None
    return dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)


def _ended(jobs: list, states: dict[str, str]) -> list:
    """The jobs among `jobs` that ended: by submitit's account, or (SLURM jobs) by squeue's, whose last word on
    each job goes into `states`."""
    import submitit

    ended = [job for job in jobs if job.done()]
    slurm = [job for job in jobs if not any(job is e for e in ended) and isinstance(job, submitit.SlurmJob)]
    queue = _queue([job.job_id for job in slurm]) if slurm else None
    for job in slurm if queue is not None else []:
        states[job.job_id] = queue.get(job.job_id, "no longer in the queue")
        if job.job_id not in queue or queue[job.job_id] not in _RUNNING:
            ended.append(job)
    return ended


def _tail(path: Path, lines: int = LOG_LINES) -> str:
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return f"  (no log at {path})"
    return f"  last lines of {path}:\n" + "\n".join("    " + line for line in text[-lines:])


def _failure(job, states: dict[str, str]) -> str | None:
    """None if the job returned, else what went wrong: its exception's last line, or its final state."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    start = time.monotonic()
    while not job.done() and time.monotonic() - start < RESULT_GRACE_S:
        time.sleep(1.0)
    if not job.done():  # ended without a result file (killed): submitit's result() would wait forever
        return f"ended without a result ({states.get(job.job_id, 'state unknown')})"
    try:
        job.result()
    except FailedJobError as err:  # the job's exception, with submitit's trace around it
        lines = [line.strip() for line in str(err).splitlines()
                 if line.strip() and not line.startswith((" ", "-", "Job ", "You can check", "Traceback"))]
        return lines[-1] if lines else type(err).__name__
    except UncompletedJobError:
        return f"ended without a result ({states.get(job.job_id) or job.state})"
    return None


def wait(jobs: list, labels: list[str], poll_s: float = 3.0) -> None:
    """Wait until every job ended; raise JobsFailed naming each failed job (`labels`: what each job computes),
    its error and its log's last lines."""
    pending, states = list(jobs), {}
    while pending:
        done = _ended(pending, states)
        pending = [job for job in pending if not any(job is d for d in done)]
        if pending:
            time.sleep(poll_s)
    failed = []
    for job, label in zip(jobs, labels):
        what = _failure(job, states)
        if what is not None:
            failed.append(f"job {job.job_id} ({label}): {what}\n{_tail(Path(job.paths.stderr))}")
    if failed:
        raise JobsFailed(f"{len(failed)} of {len(jobs)} SLURM job(s) failed (the runs of the others are stored; "
                         f"running again submits only the missing runs):\n" + "\n".join(failed))
