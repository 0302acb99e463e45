"""Datasets: built-in names and the user's uploads (.npz or ImageFolder .zip).

An upload is streamed into a temporary file (refused once it passes
UPLOAD_MAX_BYTES), validated by core.data.validate_upload, and only then moved
into the dataset folder and recorded; a rejected upload leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import PurePath
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, OwnedDataset, SessionDep, SettingsDep
from api.schemas import DatasetOut
from api.upload_rows import delete_upload, upload_fields
from api.uploads import receive_upload, upload_form
from core.catalog import BUILTINS, available_datasets
from core.data.layout import builtin_present
from core.data.limits import UploadLimitExceeded
from core.errors import DataError
from store.artifacts import dataset_files
from store.datasets import list_owned_datasets
from store.db import session_scope
from store.models import Dataset, new_id
from store.settings import Settings

router = APIRouter(prefix="/datasets", tags=["datasets"])

KINDS = {".npz": "npz", ".zip": "zip"}
UPLOAD_BODY = upload_form()


def safe_filename(filename: str, kind: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", PurePath(filename).stem).strip("._")[:100]
    return f"{stem or 'dataset'}.{kind}"


def dataset_out(row: Dataset) -> DatasetOut:
    return DatasetOut.model_validate({**upload_fields(row), "builtin": False})


def info_dict(info: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(info):
        data = dataclasses.asdict(info)
    elif hasattr(info, "model_dump"):
        data = info.model_dump(mode="json")
    elif hasattr(info, "_asdict"):
        data = info._asdict()
    else:
        data = dict(vars(info))
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}


def _validate(path, settings: Settings):
    from core.data import validate_upload

    return validate_upload(
        path,
        max_bytes=settings.upload_max_bytes,
        max_uncompressed_bytes=settings.upload_max_uncompressed_bytes,
        max_decoded_bytes=settings.upload_max_decoded_bytes,
        max_samples=settings.upload_max_samples,
        max_classes=settings.upload_max_classes,
    )


def _accept(settings: Settings, user_id: int, received_path, received, kind: str, info) -> Dataset:
    files = dataset_files(settings)
    dataset_id = new_id()
    files.accept(received_path, dataset_id, kind)
    # The name the user gave is the dataset's name everywhere, its info included.
    name = received.name or PurePath(received.filename).stem
    try:
        with session_scope(settings) as session:
            row = Dataset(
                id=dataset_id,
                owner_id=user_id,
                name=name[:255],
                filename=PurePath(received.filename).name[:255],
                kind=kind,
                size_bytes=received.size,
                info={**info_dict(info), "name": name[:255]},
            )
            session.add(row)
        return row
    except BaseException:
        files.delete(dataset_id, kind)
        raise


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    openapi_extra=UPLOAD_BODY,
)
async def upload_dataset(request: Request, user: CurrentUser, settings: SettingsDep):
    """Upload a .npz (x_train, y_train, x_test, y_test) or an ImageFolder .zip
    (`curl -F file=@data.npz`). Use the returned reference as data.dataset."""
    with dataset_files(settings).receive() as folder:
        received = await receive_upload(request, folder / "upload", settings.upload_max_bytes)
        kind = KINDS.get(PurePath(received.filename).suffix.lower())
        if kind is None:
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                detail=f"{received.filename!r}: upload a .npz file or a .zip of an ImageFolder",
            )
        # Named like the user's file, so messages about it make sense to them.
        path = (folder / "upload").rename(folder / safe_filename(received.filename, kind))
        try:
            info = await run_in_threadpool(_validate, path, settings)
        except UploadLimitExceeded as error:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=str(error)) from None
        except DataError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
        except (OSError, ValueError, EOFError) as error:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"Unreadable dataset file: {error}"
            ) from None
        row = await run_in_threadpool(_accept, settings, user.id, path, received, kind, info)
    return dataset_out(row)


def builtin_out(name: str, settings: Settings) -> DatasetOut:
    """A built-in set: its facts from the catalog, and whether this server has it."""
    dataset = BUILTINS[name]
    return DatasetOut(
        id=name,
        reference=name,
        name=name,
        builtin=True,
        info=info_dict(dataset.info()),
        present=builtin_present(name, settings.data_dir),
        source=dataset.source(),
    )


@router.get("", response_model=list[DatasetOut])
def list_datasets(session: SessionDep, user: CurrentUser, settings: SettingsDep):
    """Built-in datasets (facts, and whether this server holds them), then the user's
    uploads (newest first)."""
    builtin = [builtin_out(name, settings) for name in available_datasets()]
    return builtin + [dataset_out(row) for row in list_owned_datasets(session, user.id)]


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(row: OwnedDataset):
    return dataset_out(row)


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dataset(row: OwnedDataset, session: SessionDep, settings: SettingsDep):
    """Remove an upload. Jobs already finished keep their results."""
    return delete_upload(session, row, lambda: dataset_files(settings).delete(row.id, row.kind))
