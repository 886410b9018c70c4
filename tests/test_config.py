import dataclasses

import pytest

from tutorial_utils import clients, config
from tutorial_utils.plumbing import settings


def test_full_is_the_walkthrough_and_smoke_is_small(monkeypatch):
    monkeypatch.delenv("FEDRECON_CONFIG", raising=False)
    assert config.current() == config.FULL
    full, smoke = config.FULL, config.SMOKE
    assert (full.max_clients, full.run.num_rounds, full.run.clients_per_round) == (2000, 20, 50)
    assert full.run == config.WALKTHROUGH_RUN
    monkeypatch.setenv("FEDRECON_CONFIG", "smoke")
    assert config.current() == config.SMOKE
    assert smoke.run.num_rounds < full.run.num_rounds


def test_unknown_settings_are_rejected_with_the_variable_name(monkeypatch):
    monkeypatch.setenv("FEDRECON_CONFIG", "huge")
    with pytest.raises(ValueError, match="FEDRECON_CONFIG"):
        config.current()
    monkeypatch.setenv("FEDRECON_DATASET", "imdb")
    with pytest.raises(ValueError, match="FEDRECON_DATASET"):
        settings.dataset_choice()


def test_paths_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDRECON_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FEDRECON_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("FEDRECON_DATA_DIR", str(tmp_path / "ml"))
    assert settings.cache_dir() == tmp_path / "cache"
    assert settings.output_dir() == tmp_path / "out"
    assert settings.data_dir() == tmp_path / "ml"
    monkeypatch.delenv("FEDRECON_CACHE_DIR")
    assert settings.cache_dir() == settings.project_root() / "data"


def test_exercise_configurations(monkeypatch):
    monkeypatch.delenv("FEDRECON_CONFIG", raising=False)
    assert config.exercises() == config.EXERCISES_FULL
    monkeypatch.setenv("FEDRECON_CONFIG", "smoke")
    assert config.exercises() == config.EXERCISES_SMOKE
    split_alone = config.SPLIT_ALONE
    assert (split_alone.recon_epochs, split_alone.recon_steps_max) == (3, 50)
    assert (split_alone.post_recon_epochs, split_alone.post_recon_steps_max) == (1, 50)
    assert (split_alone.num_rounds, split_alone.clients_per_round) == (100, 50)
    assert config.FedReconRun() == config.FedReconRun(
        server_lr=1.0, client_lr=0.5, reconstruction_lr=0.1, batch_size=5, num_rounds=20
    )  # the walkthrough's setup
    tuned, smoke = config.EXERCISES_FULL.tuned, config.EXERCISES_SMOKE.tuned
    assert smoke.num_rounds < tuned.num_rounds
    # The tuned run keeps exercise 1's caps and disjoint halves; the smoke one only shrinks
    # the budget.
    assert (tuned.recon_steps_max, tuned.post_recon_epochs, tuned.post_recon_steps_max) == (
        50,
        1,
        50,
    )
    assert smoke == dataclasses.replace(
        tuned, num_rounds=smoke.num_rounds, clients_per_round=smoke.clients_per_round
    )


def test_changes_from_names_every_changed_field_in_order():
    run = dataclasses.replace(
        config.SPLIT_ALONE, recon_epochs=5, reconstruction_lr=0.3, num_rounds=150
    )
    assert config.changes_from(run, config.SPLIT_ALONE) == (
        "recon epochs 5, recon lr 0.3, rounds 150"
    )
    assert config.changes_from(config.SPLIT_ALONE, config.SPLIT_ALONE) == "(nothing)"
    walkthrough = config.WALKTHROUGH_RUN
    assert config.changes_from(walkthrough, config.SPLIT_ALONE) == (
        "recon epochs 1, recon steps max None, post-recon steps max None, rounds 20"
    )


def test_a_run_trains_on_its_split_and_scores_one_uncapped_pass():
    run = dataclasses.replace(config.SPLIT_ALONE, recon_epochs=5)
    assert run.train_split == clients.DatasetSplit(
        recon_epochs=5, recon_steps_max=50, post_recon_epochs=1, post_recon_steps_max=50
    )
    assert run.eval_split == clients.DatasetSplit(recon_epochs=5, recon_steps_max=50)
    assert config.FedReconRun().train_split == config.FedReconRun().eval_split
    with pytest.raises(ValueError, match="recon_epochs"):
        config.FedReconRun(recon_epochs=0)
    with pytest.raises(ValueError, match="clients_per_round"):
        config.FedReconRun(clients_per_round=0)


def test_paper_protocol_is_the_papers_and_smoke_is_smaller(monkeypatch):
    paper = config.PAPER_PROTOCOL
    assert (paper.run.clients_per_round, paper.run.num_rounds) == (100, 500)
    assert paper.run.train_split == clients.DatasetSplit(
        recon_epochs=5,
        recon_steps_max=50,
        post_recon_epochs=1,
        post_recon_steps_max=50,
        split_dataset=True,
    )
    assert (paper.run.num_latent_factors, paper.run.batch_size) == (50, 5)
    assert (paper.run.server_lr, paper.run.client_lr, paper.run.reconstruction_lr) == (
        1.0,
        0.5,
        0.1,
    )
    monkeypatch.setenv("FEDRECON_CONFIG", "full")
    assert config.simulation() is paper
    assert config.beyond() is config.BEYOND_FULL and config.BEYOND_FULL.run == paper.run
    monkeypatch.setenv("FEDRECON_CONFIG", "smoke")
    smoke = config.simulation()
    assert smoke is config.SMOKE_PROTOCOL and smoke.run.train_split == paper.run.train_split
    assert (
        smoke.run.num_rounds * smoke.run.clients_per_round
        < paper.run.num_rounds * paper.run.clients_per_round
    )
    assert smoke.run.num_rounds % smoke.eval_every == 0
    assert config.beyond() is config.BEYOND_SMOKE
    assert max(config.BEYOND_SMOKE.budgets) == config.BEYOND_SMOKE.run.num_rounds
    assert max(config.BEYOND_FULL.budgets) == config.BEYOND_FULL.run.num_rounds
