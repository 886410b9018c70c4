"""Several TFF workers: the same results as one, clear errors when one is gone, none left."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("tensorflow_federated")

import portpicker
import tensorflow as tf
from conftest import wait_gone

from tutorial_utils import data, model, training
from tutorial_utils.clients import ClientSampler, RatingClients, split_clients
from tutorial_utils.plumbing import runtime, synthetic_movielens, workers
from tutorial_utils.plumbing.runtime import WorkerUnavailableError
from tutorial_utils.studies import train_on_workers

LATENT_FACTORS = 4


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def call_with_deadline(fn, seconds: float):
    """Runs ``fn()`` in a thread; returns its result or exception, or fails after ``seconds``."""
    outcome = {}

    def target():
        try:
            outcome["result"] = fn()
        except BaseException as error:  # handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: a hang"
    return outcome


@pytest.fixture(scope="module")
def small_movielens(tmp_path_factory):
    folder = synthetic_movielens.make_synthetic_movielens(
        tmp_path_factory.mktemp("data") / "ml", num_users=80, num_movies=60
    )
    ratings, movies = data.load_movielens(folder)
    clients = RatingClients(ratings)
    train_ids, val_ids, _ = split_clients(clients.client_ids)
    return clients, train_ids, val_ids, len(movies)


def train_and_evaluate(training_process, evaluation_process, clients, train_ids, val_ids):
    """Two rounds of 8 clients from a fixed seed, then an evaluation: every number out."""
    sampler = ClientSampler(train_ids, 8, seed=7)
    state, history = training.train(training_process, clients, sampler, 2, progress=False)
    weights = training_process.get_model_weights(state)
    evaluation = training.evaluate(evaluation_process, weights, clients.create_tf_datasets(val_ids))
    return history.to_numpy(), list(evaluation.values()), weights.trainable[0]


@pytest.mark.parametrize(
    "text",
    [
        "localhost",
        "127.0.0.1:",
        ":8000",
        "127.0.0.1:http",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "two words:80",
        "127.0.0.1:8000,",
        "127.0.0.1:8000,127.0.0.1:8000",
    ],
)
def test_malformed_addresses_are_refused(text):
    with pytest.raises(ValueError, match="127.0.0.1:8000|host:port|more than once"):
        workers.parse_addresses(text)


def test_command_line_refuses_a_malformed_address(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_on_workers.main(["--connect", "127.0.0.1"])
    assert exit_info.value.code == 2
    assert "Not a worker address: '127.0.0.1'" in capsys.readouterr().err


def test_a_missing_worker_is_reported_quickly():
    port = portpicker.pick_unused_port()
    start = time.monotonic()
    with pytest.raises(WorkerUnavailableError, match=f"No TFF worker answers at 127.0.0.1:{port}"):
        workers.connect(f"127.0.0.1:{port}", timeout=2)
    assert time.monotonic() - start < 15


def test_local_workers_stop_with_their_pool():
    with workers.start_local(2) as pool:
        pids = [worker.pid for worker in pool.started]
        assert all(runtime.pid_alive(pid) for pid in pids)
        assert runtime.start() is None  # the pool's context stays in use
    assert all(wait_gone(pid) for pid in pids)


def test_two_workers_give_the_results_of_one(small_movielens):
    clients, train_ids, val_ids, num_movies = small_movielens
    tf.keras.utils.set_random_seed(42)
    model_fn = model.reconstruction_model_fn(num_movies, LATENT_FACTORS)
    training_process = training.build_training_process(model_fn)  # the usual single worker
    evaluation_process = training.build_evaluation_process(model_fn)
    single = train_and_evaluate(training_process, evaluation_process, clients, train_ids, val_ids)

    # Workers already running, as on other machines: the pool connects, never stops them.
    services = [runtime.start_worker(), runtime.start_worker()]
    try:
        with workers.connect(
            [f"127.0.0.1:{w.port}" for w in services], reconnect_timeout=2
        ) as pool:
            busy_before = [cpu_seconds(w.pid) for w in services]
            split = train_and_evaluate(
                training_process, evaluation_process, clients, train_ids, val_ids
            )
            busy = [cpu_seconds(w.pid) - before for w, before in zip(services, busy_before)]
            for got, expected in zip(split, single):
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
            assert min(busy) > 0.1, f"a worker did no work: {busy} CPU seconds"

            # A worker that dies between rounds fails the next one, within the reconnect
            # timeout, naming the worker.
            state = training_process.initialize()
            services[1].process.send_signal(signal.SIGKILL)
            round_data = clients.create_tf_datasets(train_ids[:8])
            start = time.monotonic()

            def next_round():  # TFF's context stack is per thread: install it in this one
                with runtime.installed(pool.context):
                    return training_process.next(state, round_data)

            outcome = call_with_deadline(next_round, seconds=90)
            assert isinstance(outcome.get("error"), WorkerUnavailableError), outcome
            assert f"127.0.0.1:{services[1].port}" in str(outcome["error"])
            assert time.monotonic() - start < 60
        assert services[0].is_running()  # connected to, not started, by the pool
    finally:
        for worker in services:
            worker.stop()


def test_a_worker_killed_mid_round_ends_the_command_with_a_clear_error():
    command = [
        sys.executable,
        "-m",
        "tutorial_utils.studies.train_on_workers",
        "--workers",
        "2",
        "--rounds",
        "200",
        "--clients-per-round",
        "40",
        "--max-clients",
        "80",
        "--latent-factors",
        "4",
    ]
    env = {**os.environ, "FEDRECON_DATASET": "synthetic", "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        pids = []
        while len(pids) < 2:
            line = process.stdout.readline()
            assert line, f"the command ended early: {process.stderr.read()[-2000:]}"
            if line.startswith("Worker:"):
                pids.append(int(line.rsplit("pid ", 1)[1].rstrip(")\n")))
        # Wait until the first worker is busy with rounds, then kill it.
        idle = cpu_seconds(pids[0])
        deadline = time.monotonic() + 120
        while cpu_seconds(pids[0]) < idle + 1.0:
            assert time.monotonic() < deadline, "the workers never started training"
            time.sleep(0.2)
        os.kill(pids[0], signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = process.communicate(timeout=90)
        assert time.monotonic() - killed_at < 60
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, stderr[-2000:]
    assert "error: The TFF worker at 127.0.0.1:" in stderr
    assert f"(pid {pids[0]}) has exited with code -9" in stderr
    assert all(wait_gone(pid) for pid in pids)
