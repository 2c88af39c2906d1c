"""Model cards (issue 19, criterion 6): a card is used only when its family, horizon and
feature list match the request and the model, and its identity fields are the ones exported
(the `verify` digest); an edited card is refused, named."""
from __future__ import annotations

import json
import shutil

import pytest
from robust_support import ws  # noqa: F401 - fixture

from keyaccounts.errors import InputError
from keyaccounts.tracking import Tracker, card_digest

pytestmark = pytest.mark.slow


@pytest.fixture
def models(ws, tmp_path):  # noqa: F811
    shutil.copytree(ws / "models", tmp_path / "models")
    return tmp_path / "models"


def edit(models, folder, **changes):
    path = models / folder / "card.json"
    card = json.loads(path.read_text())
    card.update(changes)
    path.write_text(json.dumps(card))
    return card


def load(models, name):
    return Tracker("sqlite:///unused.db", models_dir=models).load_champion(name, prefer="bundle")


def test_an_untouched_bundle_loads(models):
    _, card = load(models, "churn-90d")
    assert card["verify"] == card_digest(card) and card["family"] == "churn"


@pytest.mark.parametrize("changes", [{"version": "99"}, {"run_id": "0" * 32}, {"verify": "0" * 64}])
def test_an_edited_card_is_refused(models, changes):
    edit(models, "churn-90d", **changes)
    with pytest.raises(InputError, match="edited after export") as e:
        load(models, "churn-90d")
    assert "card.json" in str(e.value) and "verify" in str(e.value)


def test_a_card_without_its_digest_is_refused(models):
    path = models / "churn-90d" / "card.json"
    card = json.loads(path.read_text())
    del card["verify"]
    path.write_text(json.dumps(card))
    with pytest.raises(InputError, match="no 'verify' digest"):
        load(models, "churn-90d")


@pytest.mark.parametrize("changes", [{"family": "value"}, {"horizon_days": 30}, {"name": "churn-30d"}])
def test_a_card_for_another_family_or_horizon_is_refused(models, changes):
    edit(models, "churn-90d", **changes)
    with pytest.raises(InputError, match="not the requested 'churn-90d'"):
        load(models, "churn-90d")


def test_a_whole_bundle_copied_under_another_name_is_refused(models):
    shutil.rmtree(models / "value-90d")
    shutil.copytree(models / "churn-90d", models / "value-90d")
    with pytest.raises(InputError, match="describes 'churn-90d'.*not the requested 'value-90d'"):
        load(models, "value-90d")
