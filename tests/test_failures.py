"""Failures, each a test (issue 19, part 4): the network guard of the test session, a killed
notebook run, a rank that dies mid-sampling, and corrupt or wrong checkpoint and params files.

Killed training that resumes exactly, bad NIfTI files and bad CLI flags have their own tests
(``test_diffusion_train.py``, ``test_io.py``, ``test_cli_safety.py``).
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time

import pytest

import _network_guard

# --------------------------------------------------------------------------- 1. no network


def test_guard_refuses_a_non_loopback_connect_in_process():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(_network_guard.NetworkAccessBlocked,
                           match=r"tests must not use the network: tried 192\.0\.2\.1:80"):
            s.connect(("192.0.2.1", 80))  # TEST-NET-1: never routed, and never tried here
        with pytest.raises(OSError, match="tried 192.0.2.1:443"):
            s.connect_ex(("192.0.2.1", 443))
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        with pytest.raises(OSError, match=r"tried 2001:db8::1:80"):
            s.connect(("2001:db8::1", 80, 0, 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with pytest.raises(OSError, match=r"tried 192\.0\.2\.1:53"):
            s.sendto(b"x", ("192.0.2.1", 53))
    with pytest.raises(OSError, match=r"tried example\.org:80"):
        socket.socket().connect(("example.org", 80))


def test_guard_lets_loopback_and_unix_sockets_through(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        for host in ("127.0.0.1", "localhost"):
            with socket.create_connection((host, server.getsockname()[1]), timeout=5):
                pass
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
    assert _network_guard.is_local_address(socket.AF_INET6, ("::1", 1, 0, 0))
    assert _network_guard.is_local_address(socket.AF_INET6, ("::ffff:127.0.0.1", 1, 0, 0))
    assert not _network_guard.is_local_address(socket.AF_INET, ("10.0.0.1", 1))


def test_guard_reaches_child_python_processes(no_network):
    code = ("import socket\n"
            "try:\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\n"
            "except OSError as exc:\n    print(type(exc).__name__, exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert "NetworkAccessBlocked" in done.stdout and "tried 192.0.2.1:80" in done.stdout, done.stdout
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == no_network


# --------------------------------------------------------------------------- 4. corrupt or wrong inputs
# (already tested: flipped byte, truncation, config mismatch, another architecture's tensors,
# manifest not JSON or missing: test_diffusion_checkpoints.py; unknown key, wrong type, missing
# key, unknown profile: test_config.py)

def _saved_prior(folder):
    import torch

    from paperlib.diffusion.checkpoints import save_prior
    from paperlib.diffusion.schedules import ScheduleConfig
    from paperlib.diffusion.unet3d import UNet3D, UNet3DConfig

    torch.manual_seed(0)
    cfg = UNet3DConfig(base_width=8, channel_mults=(1,), num_res_blocks=1, attention_levels=())
    save_prior(folder / "prior_group0.safetensors", UNet3D(cfg), group_size=4, schedule=ScheduleConfig("cosine", 100))
    return folder / "prior_group0.safetensors", folder / "prior_group0.json"


def test_garbage_weights_with_a_matching_manifest_name_the_file(tmp_path):
    import hashlib
    import json

    from paperlib.diffusion.checkpoints import CheckpointError, load_prior

    weights, manifest = _saved_prior(tmp_path)
    meta = json.loads(manifest.read_text())
    for garbage in (b"", b"\x00" * 7, os.urandom(4096), (10**9).to_bytes(8, "little") + b"{}",
                    (2).to_bytes(8, "little") + b"[]" + b"\x00" * 64):
        weights.write_bytes(garbage)
        meta.update(size_bytes=len(garbage), sha256=hashlib.sha256(garbage).hexdigest())
        manifest.write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match=r"prior_group0\.safetensors: unreadable safetensors file"):
            load_prior(tmp_path)


def test_manifest_with_a_wrong_sha256_names_the_weights_and_manifest(tmp_path):
    import json

    from paperlib.diffusion.checkpoints import CheckpointError, load_prior

    _, manifest = _saved_prior(tmp_path)
    meta = json.loads(manifest.read_text())
    meta["sha256"] = "0" * 64
    manifest.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"prior_group0\.safetensors: SHA-256 mismatch .* manifest 000000000000"):
        load_prior(tmp_path)


@pytest.mark.parametrize("key, value", [
    ("weights", 5), ("weights", None), ("weights", "../elsewhere/prior_group0.safetensors"), ("weights", ""),
    ("sha256", 12), ("size_bytes", "big"), ("size_bytes", -1), ("size_bytes", True), ("dtype", "int8"),
    ("model_config", "UNet3D"), ("model_config", {"base_width": "wide"}), ("schedule", [1, 2]),
    ("prediction", "noise"), ("group", "0"), ("group", 3), ("num_groups", 0), ("num_groups", 2.5),
    ("group_size", 0), ("group_size", "4"),
])
def test_manifest_fields_of_the_wrong_type_or_value_name_the_manifest(tmp_path, key, value):
    import json

    from paperlib.diffusion.checkpoints import CheckpointError, load_partitioned_prior, load_prior

    _, manifest = _saved_prior(tmp_path)
    meta = json.loads(manifest.read_text())
    meta[key] = value
    manifest.write_text(json.dumps(meta))
    for load in (load_prior, load_partitioned_prior):
        with pytest.raises(CheckpointError, match=r"prior_group0\.(json|safetensors)"):
            load(tmp_path)
        with pytest.raises(CheckpointError, match=r"prior_group0\.(json|safetensors)"):
            load(manifest)


def test_manifest_of_another_format_or_missing_names_the_file(tmp_path):
    import json

    from paperlib.diffusion.checkpoints import CheckpointError, load_prior

    weights, manifest = _saved_prior(tmp_path)
    meta = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**meta, "format": "paperlib.encoder/1"}))
    with pytest.raises(CheckpointError, match=r"prior_group0\.json: not a paperlib prior manifest"):
        load_prior(manifest)
    manifest.write_text(json.dumps([meta]))
    with pytest.raises(CheckpointError, match=r"prior_group0\.json: not a paperlib prior manifest"):
        load_prior(weights)
    manifest.write_bytes(os.urandom(512) + b"\xff\xfe")
    with pytest.raises(CheckpointError, match=r"prior_group0\.json: manifest is not valid JSON"):
        load_prior(weights)
    manifest.unlink()
    with pytest.raises(CheckpointError, match=r"prior_group0\.json: manifest not found"):
        load_prior(weights)


@pytest.mark.parametrize("content", [
    b"mri: [1, 2\n",                    # unclosed flow sequence
    b"mri:\n  shape: [8, 8]\n bad indent: 1\n",
    b"\tmri: 1\n",                      # a tab where YAML wants spaces
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",  # a binary file
    b"\xff\xfe\x00m\x00r\x00i",         # not UTF-8
])
def test_params_file_that_is_not_yaml_names_the_file(tmp_path, content):
    from paperlib.config import ConfigError, load_profile

    path = tmp_path / "broken.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_profile(path)


def test_params_file_that_is_empty_or_a_folder_names_it(tmp_path):
    from paperlib.config import ConfigError, load_profile

    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match=r"empty\.yaml: expected a mapping of sections, got NoneType"):
        load_profile(tmp_path / "empty.yaml")
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"folder\.yaml"):
        load_profile(tmp_path / "folder.yaml")


# --------------------------------------------------------------------------- 2. a killed notebook run

#: the cheapest notebook of the ci profile that writes every kind of output (CSV, JSON, PNG, PDF)
KILLED_NOTEBOOK = "fig3_mri_examples"


def _complete(path) -> bool:
    """Whether an output file is whole: it parses as what its extension says."""
    import csv
    import json

    data = path.read_bytes()
    if path.suffix == ".png":
        return data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
    if path.suffix == ".pdf":
        return data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    if path.suffix in (".json", ".ipynb"):
        json.loads(data)
        return True
    if path.suffix == ".csv":
        rows = list(csv.reader(data.decode().splitlines()))
        return len(rows) >= 2 and data.endswith(b"\n") and len({len(r) for r in rows}) == 1
    if path.suffix == ".md":
        return data.endswith(b"\n") and len(data) > 0
    raise AssertionError(f"{path}: an output of unexpected kind")


def _check_folder(folder, out_ipynb, killed: bool) -> list:
    """Every file in ``folder`` is whole or a recognisable temporary; returns the temporaries."""
    from paperlib.io import is_partial

    leftovers = []
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            continue
        if is_partial(path):
            leftovers.append(path)
        elif path != out_ipynb or not killed:
            assert _complete(path), f"{path.name}: half-written"
    if killed:
        assert not out_ipynb.exists(), "a killed run left its executed notebook, which make would take as up to date"
    return leftovers


@pytest.mark.notebook
@pytest.mark.timeout(900)
def test_killed_notebook_run_leaves_no_half_written_output_and_reruns(tmp_path):
    import signal

    from paperlib.io import is_partial
    from paperlib.paths import repo_root

    src = repo_root() / "notebooks" / f"{KILLED_NOTEBOOK}.py"
    out_dir = tmp_path / "figures"
    out_dir.mkdir()
    out = out_dir / "_build" / f"{KILLED_NOTEBOOK}.ipynb"
    cmd = [sys.executable, "-m", "paperlib._run_notebook", str(src), str(out), "profile=ci", f"out_dir={out_dir}"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    # its own session: the kill takes the runner and its kernel at once, like `kill -9` of make's job
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600
        # kill as soon as the notebook has begun writing its outputs (the first file in out_dir)
        while not [p for p in out_dir.iterdir() if p.is_file()] and proc.poll() is None:
            assert time.monotonic() < deadline, "the notebook wrote nothing in 600 s"
            time.sleep(0.05)
    finally:
        # the kernel runs in a session of its own (jupyter_client starts it so): kill the whole tree,
        # else it can outlive the kill by a moment and write after the folder is checked
        import psutil

        tree = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for child in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(tree, timeout=60)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    proc.stderr.close()
    leftovers = _check_folder(out_dir, out, killed=True)
    killed_copy = [p for p in out.parent.iterdir() if is_partial(p)]  # the runner's temporary, not `out`
    assert len(killed_copy) == 1
    before = {p.name for p in out_dir.iterdir() if p.is_file()} - {p.name for p in leftovers}

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after_leftovers = _check_folder(out_dir, out, killed=False)
    assert not killed_copy[0].exists()  # the rerun removed the killed run's executed copy
    assert after_leftovers == [p for p in leftovers if p != killed_copy[0]]  # and did not need the others
    assert _complete(out)
    outputs = {p.name for p in out_dir.iterdir() if p.is_file()} - {p.name for p in after_leftovers}
    assert before <= outputs
    assert {f"{KILLED_NOTEBOOK}{ext}" for ext in (".png", ".pdf", ".json", "_cases.csv")} <= outputs


# --------------------------------------------------------------------------- 3. a rank that dies

def _rank_1_dies(x0, t):
    """A physics step that kills rank 1 mid-sampling (after the first diffusion step)."""
    import torch.distributed as dist

    how = os.environ["PAPERLIB_TEST_DEATH"]
    if dist.get_rank() == 1 and t < 90:
        with open(os.environ["PAPERLIB_TEST_DEATH_TIME"], "w") as f:
            f.write(repr(time.time()))  # when it died, for the test's 60 s
        if how == "sigkill":
            os.kill(os.getpid(), 9)
        elif how == "raise":
            raise ValueError("rank 1 lost its measurement")
        os._exit(int(how))  # "0": a library calling os._exit(0) mid-run
    return x0


def _sampling_rank(rank: int, world: int) -> list:
    import torch

    from paperlib.diffusion import distributed as dd
    from paperlib.diffusion.sampler import Sampler
    from paperlib.diffusion.schedules import ScheduleConfig
    from paperlib.diffusion.unet3d import UNet3D, UNet3DConfig

    torch.manual_seed(rank)
    model = UNet3D(UNet3DConfig(base_width=8, channel_mults=(1,), num_res_blocks=1, attention_levels=())).eval()
    result = dd.partitioned_sample([model], Sampler(ScheduleConfig("cosine", 100)), num_groups=2, group_size=2,
                                   shape=(4, 8, 8), num_steps=4, seed=0, callback=_rank_1_dies,
                                   gather_for_callback=True)  # rank 0 waits for rank 1 at every step
    return result.groups


@pytest.mark.timeout(240)
@pytest.mark.parametrize("how, message", [
    ("sigkill", r"rank 1 of 2 terminated with signal SIGKILL(; ranks \[0\] failed after it)?; the other ranks were stopped"),
    ("3", r"rank 1 of 2 terminated with exit code 3"),
    ("0", r"rank 1 of 2 exited \(code 0\) without returning its result"),
    ("raise", r"(?s)rank 1 of 2 raised:.*ValueError: rank 1 lost its measurement"),
], ids=["sigkill", "exit3", "exit0", "raise"])
def test_a_rank_that_dies_mid_sampling_ends_the_run_with_an_error_naming_it(monkeypatch, tmp_path, how, message):
    from paperlib.diffusion import distributed as dd

    monkeypatch.setenv("PAPERLIB_TEST_DEATH", how)
    monkeypatch.setenv("PAPERLIB_TEST_DEATH_TIME", str(tmp_path / "died_at"))
    with pytest.raises(dd.RankFailedError, match=message) as info:
        dd.spawn(_sampling_rank, 2)
    # from the death to the error (not counting the ranks' start-up: cold torch imports on shared cores)
    assert time.time() - float((tmp_path / "died_at").read_text()) < 60
    assert (info.value.rank, info.value.world_size) == (1, 2)
