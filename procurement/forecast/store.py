"""Model files: one folder per version under ``models/<tenant>/``, a ``current.json`` pointer.

A version is written into a hidden temporary folder, loaded back and checked, flushed to disk
(files and folders fsynced), renamed into place, and only then made current by atomically replacing
the pointer file. Readers therefore see the old model or the new one, never half a file, and a power
cut cannot leave a pointer to a version whose files never reached the disk. The metadata carries library versions, the data range, the
features and a SHA-256 of the model file, checked on load.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the CLI imports this module for its errors: not LightGBM on every command
    from procurement.forecast.model import PriceModel

MODEL_FILE = "global_lgbm_model.pkl"
META_FILE = "global_lgbm_metadata.json"
POINTER = "current.json"
log = logging.getLogger(__name__)


class ModelStoreError(RuntimeError):
    """A model version is missing, corrupt or fails its checks."""


@dataclass(frozen=True)
class StoredModel:
    version: str
    path: Path
    metadata: dict[str, Any]
    model: PriceModel
    # the forecast of every product the save's check computed, from the model's own data
    checked_forecast: pd.DataFrame | None = None


def library_versions() -> dict[str, str]:
    return {
        p: pkg_version(p) for p in ("lightgbm", "mlforecast", "pandas", "numpy", "scikit-learn")
    }


def new_version() -> str:
    now = dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%d-%H%M%S-%f}-{uuid.uuid4().hex[:4]}"


# A company's short name becomes a folder name: one plain path component, never "..", "/" or hidden.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def tenant_dir(model_dir: Path, tenant: str) -> Path:
    """The folder of ``tenant``'s models; refuses a name that would point outside ``model_dir``."""
    if not isinstance(tenant, str) or not _SAFE_NAME.fullmatch(tenant):
        raise ValueError(
            f"invalid company short name {tenant!r}: letters, digits, dashes and underscores only"
        )
    return Path(model_dir) / tenant


def _fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entry to disk (a rename is durable only once its folder is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_path(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_model(model: PriceModel) -> pd.DataFrame:
    """Refuse a model that cannot forecast every product with finite numbers; the forecast."""
    fc = model.predict()
    cols = ["y_pred", "lo_80", "hi_80", "lo_95", "hi_95"]
    if fc.empty or not np.isfinite(fc[cols].to_numpy()).all():
        raise ModelStoreError("model predicts non-finite values")
    missing = set(model.products) - set(fc["sku"])
    if missing:
        raise ModelStoreError(f"model gives no forecast for {len(missing)} products")
    return fc


def save_version(
    model_dir: Path,
    tenant: str,
    model: PriceModel,
    metadata: dict[str, Any],
    make_current: bool = True,
) -> StoredModel:
    """Write, verify and (optionally) publish a new model version."""
    root = tenant_dir(model_dir, tenant)
    root.mkdir(parents=True, exist_ok=True)
    version = metadata.get("version") or new_version()
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{version}-"))
    try:
        joblib.dump(model, tmp / MODEL_FILE, compress=3)
        _fsync_path(tmp / MODEL_FILE)
        meta = {
            **metadata,
            "version": version,
            "tenant": tenant,
            "libraries": library_versions(),
            "sha256": _sha256(tmp / MODEL_FILE),
        }
        _write_json_atomic(tmp / META_FILE, meta)
        loaded = _load_dir(tmp)
        checked = check_model(loaded.model)
        _fsync_path(tmp)
        final = root / version
        os.replace(tmp, final)
        _fsync_path(root)  # the version folder exists on disk before any pointer names it
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if make_current:
        set_current(model_dir, tenant, version, verify=False)
    return StoredModel(version, final, meta, loaded.model, checked)


def set_current(model_dir: Path, tenant: str, version: str, verify: bool = True) -> None:
    """Make ``version`` current (publish or roll back); a version that fails to load or to
    predict finite values for every product is refused and the current one stays."""
    root = tenant_dir(model_dir, tenant)
    if not (root / version / META_FILE).exists():
        raise ModelStoreError(f"no model version {version!r} for {tenant!r}")
    if verify:
        check_model(_load_dir(root / version).model)
    _write_json_atomic(
        root / POINTER, {"version": version, "switched_at": dt.datetime.now(dt.UTC).isoformat()}
    )


def current_version(model_dir: Path, tenant: str) -> str | None:
    ptr = tenant_dir(model_dir, tenant) / POINTER
    try:
        return json.loads(ptr.read_text())["version"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def list_versions(model_dir: Path, tenant: str) -> list[dict[str, Any]]:
    """Metadata of every complete version, newest first."""
    root = tenant_dir(model_dir, tenant)
    out = []
    if root.exists():
        for d in root.iterdir():
            if d.is_dir() and not d.name.startswith(".") and (d / META_FILE).exists():
                try:
                    out.append(json.loads((d / META_FILE).read_text()))
                except json.JSONDecodeError:
                    continue
    return sorted(out, key=lambda m: m.get("version", ""), reverse=True)


def read_metadata(
    model_dir: Path, tenant: str, version: str | None = None
) -> dict[str, Any] | None:
    version = version or current_version(model_dir, tenant)
    if version is None:
        return None
    try:
        return json.loads((tenant_dir(model_dir, tenant) / version / META_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _load_dir(path: Path) -> StoredModel:
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise ModelStoreError(f"metadata of {path.name} is missing or corrupt") from exc
    file = path / MODEL_FILE
    if not file.exists() or _sha256(file) != meta.get("sha256"):
        raise ModelStoreError(
            f"model file of {meta.get('version', path.name)} is missing or corrupt"
        )
    mismatched = {
        k: (v, meta.get("libraries", {}).get(k))
        for k, v in library_versions().items()
        if meta.get("libraries", {}).get(k) != v
    }
    if mismatched:
        warnings.warn(f"model trained with other library versions: {mismatched}", stacklevel=2)
    try:
        model = joblib.load(file)
    except Exception as exc:  # unpickling can fail in many ways; all mean "unusable"
        raise ModelStoreError(
            f"model file of {meta.get('version')} cannot be loaded: {exc}"
        ) from exc
    return StoredModel(meta["version"], path, meta, model)


def load_version(model_dir: Path, tenant: str, version: str | None = None) -> StoredModel:
    version = version or current_version(model_dir, tenant)
    if version is None:
        raise ModelStoreError(f"no trained model for {tenant!r} yet; run `procurement train`")
    return _load_dir(tenant_dir(model_dir, tenant) / version)


_SHARED: OrderedDict[tuple[str, str, str], StoredModel] = OrderedDict()
_SHARED_LOCK = threading.Lock()
SHARED_VERSIONS = 4


def load_version_name(model_dir: Path, tenant: str) -> str:
    """The current version of ``tenant``'s model; ``ModelStoreError`` before the first one."""
    version = current_version(model_dir, tenant)
    if version is None:
        raise ModelStoreError(f"no trained model for {tenant!r} yet; run `procurement train`")
    return version


def load_shared(model_dir: Path, tenant: str, version: str) -> StoredModel:
    """``load_version``, loaded once per process and shared by every caller (app sessions,
    assistant, jobs); the newest ``SHARED_VERSIONS`` stay loaded, so a page still using the
    previous version keeps it while a new one goes live. The model guards its own prediction."""
    key = (str(Path(model_dir).resolve()), tenant, version)
    with _SHARED_LOCK:
        if key in _SHARED:
            _SHARED.move_to_end(key)
            return _SHARED[key]
    # loading takes seconds for a large catalog: outside the lock, so one company's load does
    # not hold the others; two callers racing for the same version load it twice, harmlessly
    stored = load_version(model_dir, tenant, version)
    with _SHARED_LOCK:
        stored = _SHARED.setdefault(key, stored)
        _SHARED.move_to_end(key)
        while len(_SHARED) > SHARED_VERSIONS:
            _SHARED.popitem(last=False)
    return stored


def prune(model_dir: Path, tenant: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` versions (never the current one); stale temp folders too."""
    root = tenant_dir(model_dir, tenant)
    cur = current_version(model_dir, tenant)
    removed = []
    for meta in list_versions(model_dir, tenant)[keep:]:
        if meta["version"] != cur:
            shutil.rmtree(root / meta["version"], ignore_errors=True)
            removed.append(meta["version"])
    for d in root.glob(".tmp-*"):
        age = dt.datetime.now().timestamp() - d.stat().st_mtime
        if age > 3600:
            shutil.rmtree(d, ignore_errors=True)
    return removed
