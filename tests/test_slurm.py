"""Sweeps on a real SLURM cluster: a single-node cluster (munged, slurmctld, slurmd from Debian's slurm-wlm and
munge) started for the session, with its configuration, state, logs and munge key in a temporary folder; every
daemon is stopped by its pid and the folder removed afterwards. Without root or those programs the tests skip.

Through it (repro.sweep's `executor: slurm`, submitit's SlurmExecutor): a section's ERM, heads and SVM runs as job
arrays, the same section again submitting nothing, a job failing on a bad config (reported with its log's last
lines), and a job killed by scancel whose run the next sweep redoes, the finished runs untouched.
"""
import functools
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from repro import cluster, erm, runs, sections, sweep, synth

REPO = Path(__file__).resolve().parents[1]

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")
ENABLE = "apt-get install -y slurm-wlm munge"
PARTITION = "debug"
SLURM = {"partition": PARTITION, "gpus_per_node": 0, "timeout_min": 20, "array_parallelism": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_conf(folder: Path, host: str, munge_socket: Path) -> str:
    """One node with this machine's CPUs and half its memory, one partition; no cgroups, no accounting."""
    memory_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 2
    return f"""ClusterName=repro-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={folder / 'state'}
SlurmdSpoolDir={folder / 'spool'}
SlurmctldPidFile={folder / 'slurmctld.pid'}
SlurmdPidFile={folder / 'slurmd.pid'}
SlurmctldLogFile={folder / 'slurmctld.log'}
SlurmdLogFile={folder / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cancel_all(env: dict) -> None:
    """Cancel every job of the test cluster and wait (at most a minute) until none runs."""
    subprocess.run(["scancel", f"--partition={PARTITION}"], env=env, capture_output=True)
    for _ in range(60):
        out = subprocess.run(["squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING"], env=env,
                             capture_output=True, text=True)
        if out.returncode != 0 or not out.stdout.strip():
            return
        time.sleep(1)


@pytest.fixture(scope="session")
def slurm_cluster():
    """The environment (SLURM_CONF) of a running single-node cluster, set for the session."""
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"a test SLURM cluster needs root and slurm-wlm and munge (as root: {ENABLE})")
    folder = Path(tempfile.mkdtemp(prefix="repro-slurm-", dir="/tmp"))  # short: munge's socket path must fit
    procs = []
    try:
        for sub in ("state", "spool"):
            (folder / sub).mkdir()
        key, sock, host = folder / "munge.key", folder / "munge.socket", socket.gethostname().split(".")[0]
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        conf = folder / "slurm.conf"
        conf.write_text(_slurm_conf(folder, host, sock))
        env = {**os.environ, "SLURM_CONF": str(conf)}
        out = open(folder / "daemons.out", "w")
        procs.append(subprocess.Popen(["munged", "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
                                       f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
                                       f"--seed-file={folder / 'munged.seed'}"], stdout=out, stderr=out))
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)
        procs.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(conf)], env=env, stdout=out, stderr=out))
        procs.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf), "-N", host], env=env, stdout=out, stderr=out))
        for _ in range(60):
            state = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the test SLURM cluster did not come up:\n{(folder / 'daemons.out').read_text()[-2000:]}")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SLURM_CONF", str(conf))
            # jobs unpickle functions of this module (tests.test_slurm): the repository on their path, whatever
            # folder they start in
            mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
            yield env
    finally:
        if procs:
            _cancel_all({**os.environ, "SLURM_CONF": str(folder / "slurm.conf")})
        _stop(procs)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    """The smoke twin of Waterbirds (an absolute path: the jobs read it)."""
    root = tmp_path_factory.mktemp("slurm-data")
    synth.ensure(root, ["waterbirds"], scale="smoke")
    return root


def _results(store: Path) -> dict[str, list[str]]:
    """{SLURM job id: the kinds of the run directories it returned}, from submitit's result files."""
    from submitit.core.utils import pickle_load

    out = {}
    for path in (store / ".submitit").rglob("*_result.pkl"):
        outcome, paths = pickle_load(path)
        assert outcome == "success", paths
        out[path.name.removesuffix("_0_result.pkl")] = [Path(p).parent.name for p in paths]
    return out


def test_a_section_runs_as_slurm_job_arrays_and_a_second_build_submits_nothing(slurm_cluster, twin, tmp_path,
                                                                                monkeypatch, capsys):
    """Margins on the Waterbirds twin, 2 seeds: its ERM, heads and SVM runs each as a job array of 2 tasks, with
    the bits of a local run; then the same section finds every run cached and submits no job."""
    store = tmp_path / "runs"
    monkeypatch.setenv("REPRO_RUNS", str(store))
    args = dict(datasets=["waterbirds"], seeds=[1, 2], profile="smoke", data_root=str(twin), llr_seeds=[1],
                svm_points=4, executor="slurm", slurm=SLURM)
    first = sections.margins(**args)
    jobs = _results(store)
    arrays = {}
    for job_id, kinds in jobs.items():
        arrays.setdefault(job_id.split("_")[0], set()).update(kinds)
    assert sorted(len(kinds) for kinds in jobs.values()) == [1] * 6, jobs  # one run per task
    assert sorted(map(sorted, arrays.values())) == [["erm"], ["heads"], ["svm"]], arrays
    assert all(sorted(j.split("_")[1] for j in jobs if j.startswith(a + "_")) == ["0", "1"] for a in arrays)
    assert "erm: 2 runs, 0 cached, 2 to compute" in capsys.readouterr().out

    config = erm.default_config("waterbirds", "smoke", data_root=str(twin), seed=1)
    here = sweep.run("erm", [config], store=tmp_path / "local")[0]
    there = runs.run_dir("erm", config, store)
    assert (here / "metrics.json").read_bytes() == (there / "metrics.json").read_bytes()

    again = sections.margins(**args)
    out = capsys.readouterr().out
    for kind in ("erm", "heads", "svm"):
        assert f"{kind}: 2 runs, 2 cached, 0 to compute" in out, out
    assert _results(store) == jobs  # no job submitted
    for table, same in zip(again, first):
        pd.testing.assert_frame_equal(table, same)


def test_a_failing_job_is_reported_with_its_logs_last_lines(slurm_cluster, twin, tmp_path):
    """A bad config reaches its job (an unknown model); the sweep waits for the whole array, then names the job, the
    error and its log's last lines; the good run of the same array is stored, nothing of the bad one is."""
    store = tmp_path / "runs"
    good = erm.default_config("waterbirds", "smoke", data_root=str(twin), seed=3)
    bad = {**good, "seed": 4, "model": "no-such-model"}
    with pytest.raises(cluster.JobsFailed) as err:
        sweep.run("erm", [good, bad], executor="slurm", slurm=SLURM, store=store)
    message = str(err.value)
    head, job_line, log_line = message.splitlines()[:3]
    assert head.startswith("1 of 2 SLURM job(s) failed"), message
    assert f"(erm run {runs.run_id('erm', bad)})" in job_line and "no-such-model" in job_line, message
    assert log_line.strip().startswith("last lines of ") and log_line.strip().endswith(".err:"), message
    log = Path(log_line.strip().removeprefix("last lines of ").removesuffix(":"))
    assert log.is_file() and log.read_text().splitlines()[-1].strip() in message
    assert runs.is_done(runs.run_dir("erm", good, store))
    assert not any(p.name.startswith(runs.run_id("erm", bad)) or ".tmp-" in p.name for p in (store / "erm").iterdir()
                   if not p.name.startswith(".lock-"))


def _held(config: dict, workdir: Path, go: str) -> dict:
    """erm.train, except that the run of seed 2 first waits (at most 5 minutes) for the file `go`."""
    if config["seed"] == 2:
        Path(go).with_suffix(".started").touch()
        for _ in range(300):
            if Path(go).exists():
                break
            time.sleep(1)
    return erm.train(config, workdir)


def test_a_job_killed_by_scancel_is_resubmitted_and_nothing_is_lost(slurm_cluster, twin, tmp_path, capsys):
    """Two ERM runs as an array; the second is cancelled mid-run (its claim held, its temporary folder half
    written). The sweep reports it; the next sweep submits that run alone and redoes it; the first run's folder is
    the one written before the cancel; the store verifies clean."""
    store, go = tmp_path / "runs", tmp_path / "go"
    configs = [erm.default_config("waterbirds", "smoke", data_root=str(twin), seed=s) for s in (1, 2)]
    compute = functools.partial(_held, go=str(go))
    failure = []

    def first_sweep():
        try:
            sweep.run("erm", configs, executor="slurm", slurm=SLURM, store=store, compute=compute)
        except cluster.JobsFailed as err:
            failure.append(str(err))

    thread = threading.Thread(target=first_sweep, daemon=True)
    thread.start()
    kept, held = runs.run_dir("erm", configs[0], store), runs.run_id("erm", configs[1])
    try:
        running = []
        for _ in range(600):  # until the first run is done and its task gone, the second one's started
            running = subprocess.run(["squeue", "--noheader", "--states=RUNNING", "--format=%i"], env=slurm_cluster,
                                     capture_output=True, text=True, check=True).stdout.split()
            if go.with_suffix(".started").exists() and runs.is_done(kept) and len(running) == 1:
                break
            time.sleep(0.5)
        assert go.with_suffix(".started").exists() and runs.is_done(kept) and len(running) == 1, running
        subprocess.run(["scancel", running[0]], env=slurm_cluster, check=True)
        thread.join(300)
    finally:
        go.touch()  # (a failed assertion above: the held job finishes, the sweep returns)
        thread.join(300)
    assert len(failure) == 1
    assert f"job {running[0]} (erm run {held}): ended without a result" in failure[0], failure[0]
    assert "CANCELLED" in failure[0], failure[0]
    assert list((store / "erm").glob(f".tmp-{held}-*")), "the killed run left its folder"
    before = {p.name: p.stat().st_mtime_ns for p in kept.iterdir()}

    capsys.readouterr()
    sweep.run("erm", configs, executor="slurm", slurm=SLURM, store=store, compute=compute)
    assert "erm: 2 runs, 1 cached, 1 to compute" in capsys.readouterr().out
    assert all(runs.is_done(runs.run_dir("erm", c, store)) for c in configs)
    assert {p.name: p.stat().st_mtime_ns for p in kept.iterdir()} == before
    assert not list((store / "erm").glob(".tmp-*"))
    checked, problems = runs.verify_store(store)
    assert checked == 2 and problems == [], problems
