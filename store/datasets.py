"""Dataset repository: the queries on uploaded datasets the API and the worker share
(only ever the owner's uploads, see store.uploads)."""

from __future__ import annotations

from store.models import Dataset
from store.uploads import OwnedUploads

owned_datasets = OwnedUploads(Dataset)
get_owned_dataset = owned_datasets.get
list_owned_datasets = owned_datasets.list
