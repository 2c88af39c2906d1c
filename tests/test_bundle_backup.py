"""_BundleBackup: what an interrupted training run uses to put the old bundle back."""
from __future__ import annotations

import os

import pytest

from keyaccounts.tracking import _BundleBackup


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def replace(folder, name, data):  # as export_bundle does: a new file renamed over the old one
    (folder / f"new-{name}").write_bytes(data)
    os.replace(folder / f"new-{name}", folder / name)


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "model.joblib").write_bytes(b"old model")
    (tmp_path / "card.json").write_bytes(b"old card")
    return tmp_path


def test_restore_after_an_export_puts_the_old_files_back(bundle):
    b = _BundleBackup(bundle)
    replace(bundle, "model.joblib", b"new model")
    replace(bundle, "card.json", b"new card")
    b.restore()
    b.discard()
    assert files(bundle) == {"card.json": b"old card", "model.joblib": b"old model"}


def test_restore_after_half_an_export_and_when_nothing_changed(bundle):
    b = _BundleBackup(bundle)
    replace(bundle, "model.joblib", b"new model")  # interrupted before the card
    b.restore()
    assert files(bundle) == {"card.json": b"old card", "model.joblib": b"old model"}
    b = _BundleBackup(bundle)
    b.restore()  # nothing exported: links of the same files, no temp file left behind
    assert files(bundle) == {"card.json": b"old card", "model.joblib": b"old model"}


def test_restore_removes_a_bundle_that_did_not_exist(tmp_path):
    b = _BundleBackup(tmp_path)
    (tmp_path / "model.joblib").write_bytes(b"new model")
    b.restore()
    assert files(tmp_path) == {}


def test_discard_keeps_the_new_bundle_and_leaves_no_temp_file(bundle):
    b = _BundleBackup(bundle)
    assert len(list(bundle.glob(".*.tmp"))) == 2
    replace(bundle, "model.joblib", b"new model")
    b.discard()
    assert files(bundle) == {"card.json": b"old card", "model.joblib": b"new model"}
