import json
from pathlib import Path

from tests.support.registry import s3_event

from regseal.layout import RegistryLayout
from regseal.local.eventfilter import without_tag_events

EVENTS = Path(__file__).parents[2] / "events"
HEX = "ab" * 32
ROOT = "docker/registry/v2/repositories/team-a/app/_manifests/"


def body(*keys):
    records = [s3_event("registry", key)["Records"][0] for key in keys]
    return json.dumps({"Records": records})


def test_tag_link_events_are_dropped_and_revision_events_kept():
    accept = without_tag_events(RegistryLayout())

    assert not accept(body(ROOT + "tags/1.0/current/link"))
    assert not accept(body(ROOT + f"tags/1.0/index/sha256/{HEX}/link"))
    assert accept(body(ROOT + f"revisions/sha256/{HEX}/link"))
    # A message with a revision among tag links still reaches the seal.
    assert accept(
        body(ROOT + "tags/1.0/current/link", ROOT + f"revisions/sha256/{HEX}/link")
    )


def test_eventbridge_samples_are_classified_like_notifications():
    accept = without_tag_events(RegistryLayout())

    tag = (EVENTS / "eventbridge-object-created-tag-link.json").read_text()
    revision = (EVENTS / "eventbridge-object-created-revision-link.json").read_text()

    assert (accept(tag), accept(revision)) == (False, True)


def test_unreadable_and_foreign_messages_reach_the_handler():
    accept = without_tag_events(RegistryLayout())

    assert accept("not json")
    assert accept(json.dumps({"Event": "s3:TestEvent"}))
    assert accept(body("docker/registry/v2/blobs/sha256/ab/" + HEX + "/data"))
    # A path trick fails in the seal with its own error, not silently here.
    assert accept(
        body("docker/registry/v2/repositories/../_manifests/tags/x/current/link")
    )
