"""benchmarks/latent_at_init.py: the raters' posterior spread of a seed's run before its first step."""

import json

import pytest

from benchmarks import latent_at_init


def test_seeds_are_ranges_and_single_seeds():
    assert latent_at_init.parse_seeds("42-45,50") == [42, 43, 44, 45, 50]
    assert latent_at_init.parse_seeds("7") == [7] and latent_at_init.parse_seeds("") == []


def test_lost_started_lower_is_the_share_of_lost_and_held_pairs_where_the_lost_run_started_lower():
    spreads = {1: 0.1, 2: 0.3, 3: 0.2, 4: 0.2}
    assert latent_at_init.lost_started_lower(spreads, {1}) == 1.0  # below every held seed
    assert latent_at_init.lost_started_lower(spreads, {2}) == 0.0
    assert latent_at_init.lost_started_lower(spreads, {3}) == pytest.approx((1 + 0.5 + 0) / 3)  # a tie counts half
    with pytest.raises(ValueError, match="one lost and one held"):
        latent_at_init.lost_started_lower(spreads, {1, 2, 3, 4})


def test_each_seed_is_measured_before_training_and_the_same_seed_measures_the_same(tmp_path):
    latent_at_init.main(["--out", str(tmp_path), "--seeds", "0-1", "--lost", "1", "--cases", "40"])
    result = json.loads((tmp_path / "latent_at_init.json").read_text())
    assert result["lost"] == [1] and set(result["seeds"]) == {"0", "1"}
    first = result["seeds"]["0"]
    assert first["val_rater_spread"] >= 0 and first["val_loss"] > 0
    assert result["lost_started_lower"] == float(result["seeds"]["1"]["val_rater_spread"] < first["val_rater_spread"])
    folder = tmp_path / "bimodal"
    assert latent_at_init.spread_at_init(folder, "demo", 0, _shipped()) == first  # nothing trained, nothing random left


def test_lost_seeds_must_be_among_the_seeds_and_leave_a_held_one(tmp_path, capsys):
    with pytest.raises(SystemExit):
        latent_at_init.main(["--out", str(tmp_path), "--seeds", "0-1", "--lost", "5"])
    assert "not in --seeds: [5]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        latent_at_init.main(["--out", str(tmp_path), "--seeds", "0-1", "--lost", "0,1"])
    assert "at least one held seed" in capsys.readouterr().err
    assert not (tmp_path / "bimodal").exists()


def _shipped():
    from uncertainty_adapters.integrations.pipeline.backbone.demo import ensure_demo_backbone

    return ensure_demo_backbone()[0]
