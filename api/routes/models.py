"""Models: the weights of a model the user trained, to compress it from there.

`POST /models` takes a .safetensors file and the architecture it is for; a job then
names it as `"model": {"arch": ..., "weights": "upload:ID"}`. The upload is
streamed into a private temporary folder (refused past UPLOAD_MAX_BYTES), its
header checked without reading a tensor or unpickling anything, its names and
shapes compared with the architecture (api.weights_check), and only then moved into
place and recorded: a refused upload leaves nothing behind.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, SessionDep, SettingsDep
from api.errors import field_error
from api.upload_rows import delete_upload, owned_or_404, upload_fields
from api.uploads import Received, receive_upload, upload_form
from api.weights_check import check_against_arch, check_finite
from core.catalog import BUILTINS, parse_upload_reference
from core.spec import JobSpec, ModelSpec
from core.weights import SUFFIX, WeightsError, WeightsHeader, read_header
from store.datasets import get_owned_dataset
from store.db import session_scope
from store.models import ModelUpload, User, new_id
from store.settings import Settings
from store.weights import get_owned_model, list_owned_models, owned_models, weights_files

router = APIRouter(prefix="/models", tags=["models"])

SHAPE_FIELDS = ("num_classes", "in_channels", "image_size")
UPLOAD_BODY = upload_form(
    file_description="safetensors.torch.save_file(model.state_dict(), path)",
    fields={
        "arch": {"type": "string", "description": "e.g. fcn, resnet20, tv:resnet18"},
        "num_classes": {"type": "integer"},
        "in_channels": {"type": "integer"},
        "image_size": {"type": "integer"},
        "dataset": {
            "type": "string",
            "description": "A built-in name or upload:ID whose classes, channels and image "
            "size the model was built for (instead of the three numbers)",
        },
    },
    required=("arch",),
)


class ModelOut(BaseModel):
    id: str
    reference: str
    name: str
    filename: str
    arch: str
    num_classes: int
    in_channels: int
    image_size: int
    size_bytes: int
    tensor_count: int
    parameter_count: int = Field(
        description="float values in the file: parameters and BatchNorm statistics"
    )
    shape_check: str = Field(
        description="checked: the names and shapes fit the architecture; deferred: this "
        "server's API has no engine to build it, the worker checks when a job starts"
    )
    created_at: datetime


def model_out(row: ModelUpload) -> ModelOut:
    return ModelOut.model_validate(upload_fields(row))


def owned_model(model_id: str, session: SessionDep, user: CurrentUser) -> ModelUpload:
    return owned_or_404(session, owned_models, model_id, user, "model")


OwnedModel = Annotated[ModelUpload, Depends(owned_model)]


# --------------------------------------------------------------- the form


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=message)


def _shape_from_dataset(reference: str, session, user: User) -> dict[str, int]:
    if reference in BUILTINS:
        info = BUILTINS[reference]
        return {k: getattr(info, k) for k in SHAPE_FIELDS}
    dataset_id = parse_upload_reference(reference)
    row = get_owned_dataset(session, dataset_id, user.id) if dataset_id else None
    if row is None:
        raise _unprocessable(
            f"dataset {reference!r} is neither a built-in dataset nor one of your uploads"
        )
    return {k: int(row.info[k]) for k in SHAPE_FIELDS}


def model_for_form(fields: dict[str, str], session, user: User) -> ModelSpec:
    """The architecture and shapes the weights are for, from the upload's form fields."""
    if not fields.get("arch"):
        raise _unprocessable("say which architecture the weights are for: the 'arch' field")
    given: dict[str, Any] = {"arch": fields["arch"]}
    if fields.get("dataset"):
        given.update(_shape_from_dataset(fields["dataset"], session, user))
    for key in SHAPE_FIELDS:
        if fields.get(key):
            given[key] = fields[key]
    missing = [key for key in SHAPE_FIELDS if key not in given]
    if missing:
        raise _unprocessable(
            f"the weights' shapes depend on {', '.join(missing)}: send them, or 'dataset' "
            "(a built-in name or upload:ID) to take them from the data the model was built for"
        )
    try:
        return ModelSpec.model_validate(given)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise _unprocessable(f"{where}: {message}") from None


def _mismatch_response(error: WeightsError) -> JSONResponse:
    """422 whose `detail` is the message; the lists are there for clients that show them."""

    def shapes(mapping: dict) -> dict[str, list[int]]:
        return {name: list(shape) for name, shape in mapping.items()}

    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={
            "detail": str(error),
            "missing": shapes(error.missing),
            "unexpected": shapes(error.unexpected),
            "wrong_shape": {
                name: {"found": list(found), "expected": list(expected)}
                for name, (found, expected) in error.wrong_shape.items()
            },
        },
    )


def _check(path, model: ModelSpec, settings: Settings) -> tuple[WeightsHeader, str]:
    header = read_header(path, max_bytes=settings.upload_max_bytes)
    check_finite(path, header)
    shape_check = check_against_arch(
        header, model.arch, model.num_classes, model.in_channels, model.image_size
    )
    return header, shape_check


def _accept(
    settings: Settings,
    user_id: int,
    path,
    received: Received,
    model: ModelSpec,
    header: WeightsHeader,
    shape_check: str,
) -> ModelUpload:
    files = weights_files(settings)
    model_id = new_id()
    files.accept(path, model_id)
    try:
        with session_scope(settings) as session:
            row = ModelUpload(
                id=model_id,
                owner_id=user_id,
                name=(received.name or PurePath(received.filename).stem)[:255],
                filename=PurePath(received.filename).name[:255],
                arch=model.arch,
                num_classes=model.num_classes,
                in_channels=model.in_channels,
                image_size=model.image_size,
                size_bytes=received.size,
                tensor_count=len(header.tensors),
                parameter_count=header.parameter_count,
                shape_check=shape_check,
            )
            session.add(row)
        return row
    except BaseException:
        files.delete(model_id)
        raise


# --------------------------------------------------------------- routes


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelOut,
    openapi_extra=UPLOAD_BODY,
    responses={
        413: {"description": "Larger than UPLOAD_MAX_BYTES"},
        415: {"description": "Not a .safetensors file"},
        422: {
            "description": "Malformed file, or weights that do not fit the architecture "
            "(`missing`, `unexpected`, `wrong_shape` list the tensors)"
        },
    },  # fmt: skip
)
async def upload_model(
    request: Request, user: CurrentUser, settings: SettingsDep, session: SessionDep
):
    """Upload the weights of your trained model (`curl -F file=@model.safetensors -F
    arch=resnet20 -F dataset=cifar10`). Use the returned reference as model.weights."""
    files = weights_files(settings)
    with files.receive() as folder:
        received = await receive_upload(request, folder / "upload", settings.upload_max_bytes)
        if PurePath(received.filename).suffix.lower() != SUFFIX:
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                detail=f"{received.filename!r}: upload a .safetensors file "
                "(safetensors.torch.save_file(model.state_dict(), path)); pickled "
                "checkpoints (.pt, .pth, .bin) are never opened",
            )
        model = model_for_form(received.fields, session, user)
        path = (folder / "upload").rename(folder / "weights.safetensors")
        try:
            header, shape_check = await run_in_threadpool(_check, path, model, settings)
        except WeightsError as error:
            if error.missing or error.unexpected or error.wrong_shape:
                return _mismatch_response(error)
            raise _unprocessable(str(error)) from None
        row = await run_in_threadpool(
            _accept, settings, user.id, path, received, model, header, shape_check
        )
    return model_out(row)


@router.get("", response_model=list[ModelOut])
def list_models(session: SessionDep, user: CurrentUser):
    """Your uploaded weights, newest first."""
    return [model_out(row) for row in list_owned_models(session, user.id)]


@router.get("/{model_id}", response_model=ModelOut)
def get_model(row: OwnedModel):
    return model_out(row)


@router.delete("/{model_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_model(row: OwnedModel, session: SessionDep, settings: SettingsDep):
    """Remove uploaded weights. Jobs already finished keep their results."""
    return delete_upload(session, row, lambda: weights_files(settings).delete(row.id))


# --------------------------------------------------------------- jobs that name weights


def with_weights_reference(session, spec: JobSpec, user: User) -> JobSpec:
    """The job's model.weights must be one of the user's uploads, for the job's arch.

    The number of classes the weights were built for becomes the job's when the spec
    leaves it out (the head's shape is the weights'); channels and image size follow
    the data as always, and the worker's strict load names any tensor that then differs.
    """
    reference = spec.model.weights
    if reference is None:
        return spec
    model_id = parse_upload_reference(reference)
    if model_id is None:
        raise field_error(
            ["model", "weights"],
            "file paths are not accepted by the service; upload the weights "
            "(POST /api/v1/models) and use upload:ID",
        )
    row = get_owned_model(session, model_id, user.id)
    if row is None:
        raise field_error(
            ["model", "weights"],
            f"no uploaded model {reference!r}; GET /api/v1/models lists yours (reference "
            "upload:ID)",
        )
    if row.arch != spec.model.arch:
        raise field_error(
            ["model", "arch"],
            f"the weights {reference} are for {row.arch}, not {spec.model.arch}; set "
            f"model.arch to {row.arch}",
        )
    if spec.model.num_classes is None:
        model = spec.model.model_copy(update={"num_classes": row.num_classes})
        return spec.model_copy(update={"model": model})
    return spec
