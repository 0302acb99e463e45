"""The owner lookup of uploads: a user only ever finds their own."""

from __future__ import annotations

from store.datasets import get_owned_dataset, list_owned_datasets
from store.models import Dataset, new_id
from store.tokens import get_or_create_user


def test_an_upload_is_found_only_by_its_owner(open_session):
    with open_session() as session:
        owner = get_or_create_user(session, "dataset-owner")
        other = get_or_create_user(session, "dataset-other")
        older, newer = new_id(), new_id()
        for dataset_id in (older, newer):
            session.add(
                Dataset(
                    id=dataset_id,
                    owner_id=owner.id,
                    name="mine",
                    filename="mine.npz",
                    kind="npz",
                    size_bytes=10,
                    info={},
                )
            )
            session.flush()
        session.commit()
        assert get_owned_dataset(session, older, owner.id).id == older
        assert get_owned_dataset(session, older, other.id) is None
        assert get_owned_dataset(session, new_id(), owner.id) is None
        assert {row.id for row in list_owned_datasets(session, owner.id)} == {older, newer}
        assert list_owned_datasets(session, other.id) == []
