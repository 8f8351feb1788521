"""Model files are published atomically, verified on load, and never replaced by a broken one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from procurement.forecast import store


class NanModel:
    """A model that loads fine but forecasts NaN for one product."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.products = inner.products

    def predict(self):
        fc = self.inner.predict()
        fc.loc[0, "y_pred"] = float("nan")
        return fc


def test_save_version_publishes_model_and_metadata(tmp_path, fitted_model) -> None:
    saved = store.save_version(tmp_path, "acme", fitted_model, {"trained_at": "now"})
    assert store.current_version(tmp_path, "acme") == saved.version
    meta = json.loads((saved.path / store.META_FILE).read_text())
    assert meta["libraries"]["lightgbm"] and len(meta["sha256"]) == 64
    loaded = store.load_version(tmp_path, "acme")
    pd.testing.assert_frame_equal(loaded.model.predict(), fitted_model.predict())
    assert not list((tmp_path / "acme").glob(".tmp-*"))


def test_corrupt_model_file_is_refused_and_previous_stays_usable(tmp_path, fitted_model) -> None:
    first = store.save_version(tmp_path, "acme", fitted_model, {})
    second = store.save_version(tmp_path, "acme", fitted_model, {}, make_current=False)
    (second.path / store.MODEL_FILE).write_bytes(b"garbage")
    with pytest.raises(store.ModelStoreError, match="corrupt"):
        store.load_version(tmp_path, "acme", second.version)
    assert store.current_version(tmp_path, "acme") == first.version
    assert len(store.load_version(tmp_path, "acme").model.predict()) > 0


def test_model_that_predicts_nan_is_not_published(tmp_path, fitted_model, monkeypatch) -> None:
    good = store.save_version(tmp_path, "acme", fitted_model, {})
    with pytest.raises(store.ModelStoreError, match="non-finite"):
        store.save_version(tmp_path, "acme", NanModel(fitted_model), {})  # type: ignore[arg-type]
    assert store.current_version(tmp_path, "acme") == good.version
    assert [m["version"] for m in store.list_versions(tmp_path, "acme")] == [good.version]


def test_no_model_yet_says_how_to_get_one(tmp_path) -> None:
    with pytest.raises(store.ModelStoreError, match="procurement train"):
        store.load_version(tmp_path, "nobody")


def test_prune_keeps_newest_and_current(tmp_path, fitted_model) -> None:
    versions = [store.save_version(tmp_path, "acme", fitted_model, {}).version for _ in range(3)]
    store.set_current(tmp_path, "acme", versions[0])
    removed = store.prune(tmp_path, "acme", keep=1)
    assert removed == [versions[1]]
    left = {m["version"] for m in store.list_versions(tmp_path, "acme")}
    assert left == {versions[0], versions[2]}


@pytest.mark.parametrize("name", ["../x", "../../etc", "a/b", ".hidden", "", "x\x00y"])
def test_save_version_refuses_a_company_name_outside_the_model_folder(
    tmp_path, fitted_model, name
) -> None:
    """A short name is one plain folder name: `--tenant ../x` writes nothing outside models/."""
    model_dir = tmp_path / "deploy" / "models"  # "../../x" would still land inside tmp_path
    with pytest.raises(ValueError, match="invalid company short name"):
        store.save_version(model_dir, name, fitted_model, {})
    with pytest.raises(ValueError, match="invalid company short name"):
        store.current_version(model_dir, name)
    assert not list(tmp_path.rglob("*"))


def test_model_files_and_folders_reach_the_disk_before_the_pointer_moves(
    tmp_path, fitted_model, monkeypatch
) -> None:
    """Model file, metadata, the version folder and the company folder are fsynced before
    current.json is replaced, so a power cut cannot leave a pointer to missing files."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:  # type: ignore[no-untyped-def]
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    saved = store.save_version(tmp_path, "acme", fitted_model, {})
    root = tmp_path / "acme"
    pointer = events.index(("replace", str(root / store.POINTER)))
    before = events[:pointer]
    synced = [Path(p) for kind, p in before if kind == "fsync"]
    assert any(p.name == store.MODEL_FILE for p in synced)
    assert any(p.name.startswith(".global_lgbm_metadata.json.") for p in synced)
    moved = before.index(("replace", str(saved.path)))
    assert ("fsync", str(root / saved.version)) not in before  # synced under its temporary name:
    tmp_synced = [Path(p) for kind, p in before[:moved] if kind == "fsync"]
    assert any(p.name.startswith(f".tmp-{saved.version}") for p in tmp_synced)
    assert ("fsync", str(root)) in before[moved:]  # the rename itself is durable
    assert ("fsync", str(root)) in events[pointer:]  # and so is the pointer's


@pytest.fixture
def trained(db, settings) -> str:
    from procurement import demo
    from procurement.db import open_session
    from procurement.training import train_global_lgbm_model

    with open_session(db) as s, s.begin():
        demo.seed_synthetic(s, "demo", n_products=6, n_days=150)
    with open_session(db) as s, s.begin():
        return train_global_lgbm_model(s, "demo", settings).version


def test_new_model_becomes_current_only_when_its_run_is_committed(db, settings, trained) -> None:
    """The pointer moves after the database records the run, not before."""
    from procurement.db import open_session
    from procurement.db.models import ModelRun
    from procurement.training import train_global_lgbm_model

    with open_session(db) as s, s.begin():
        new = train_global_lgbm_model(s, "demo", settings).version
        assert store.current_version(settings.model_dir, "demo") == trained  # not yet
    assert store.current_version(settings.model_dir, "demo") == new
    with open_session(db) as s:
        assert s.query(ModelRun).filter_by(version=new, status="done").count() == 1


def test_model_of_a_rolled_back_run_is_never_published(db, settings, trained) -> None:
    from procurement.db import open_session
    from procurement.db.models import ModelRun
    from procurement.training import train_global_lgbm_model

    with pytest.raises(RuntimeError, match="commit failed"), open_session(db) as s, s.begin():
        new = train_global_lgbm_model(s, "demo", settings).version
        raise RuntimeError("commit failed")
    assert store.current_version(settings.model_dir, "demo") == trained
    with (
        open_session(db) as s,
        s.begin(),
    ):  # a later commit of the same kind of session publishes nothing
        s.query(ModelRun).count()
    assert store.current_version(settings.model_dir, "demo") == trained
    with open_session(db) as s:
        assert s.query(ModelRun).filter_by(version=new).count() == 0
