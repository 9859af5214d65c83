"""The composition root builds the writer the settings ask for."""

from regseal.apiwriteback import ApiWriteBack
from regseal.settings import Settings
from regseal.storage import ObjectStore, ReadOnlyPrefixStore
from regseal.wiring import build_sealer
from regseal.writeback import StorageWriteBack


def test_storage_mode_writes_storage_with_a_plain_store(aws):
    sealer = build_sealer(Settings(bucket="registry"))

    assert isinstance(sealer.writer, StorageWriteBack)
    assert type(sealer.store) is ObjectStore


def test_api_mode_writes_through_the_api_and_guards_the_registry_root(aws):
    settings = Settings(
        bucket="registry",
        registry_root="/harbor",
        write_back="api",
        registry_url="https://harbor.example",
        registry_credentials="ssm:/regseal/harbor-robot",
    )

    sealer = build_sealer(settings)

    assert isinstance(sealer.writer, ApiWriteBack)
    assert sealer.writer.client.base_url == "https://harbor.example"
    assert sealer.writer.client.auth.credentials.location == "ssm:/regseal/harbor-robot"
    assert isinstance(sealer.store, ReadOnlyPrefixStore)
    assert sealer.store.read_only == ("harbor/docker/registry/v2/",)
    assert sealer.writer.store is sealer.store
