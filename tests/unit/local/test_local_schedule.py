import importlib.util
import time

from regseal.local.runtime import function_path
from regseal.local.schedule import Schedule, scheduled_event


def load_tuf_app():
    spec = importlib.util.spec_from_file_location(
        "tuf_app_for_schedule_test", function_path("tuf")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scheduled_event_is_what_the_tuf_function_takes_for_its_schedule():
    event = scheduled_event("regseal-tuf-hourly", region="us-east-1")

    assert load_tuf_app().parse_event(event) == ("schedule", None, [])
    assert event["resources"] == [
        "arn:aws:events:us-east-1:123456789012:rule/regseal-tuf-hourly"
    ]
    assert event["time"].endswith("Z")


def test_schedule_invokes_every_interval_and_survives_a_failing_run():
    calls = []

    def handler(event, context):
        calls.append((event["source"], context.function_name))
        if len(calls) == 1:
            raise RuntimeError("first run fails")

    schedule = Schedule(
        handler,
        interval=0.05,
        rule="regseal-tuf-hourly",
        function_name="regseal-tuf",
        region="us-east-1",
    )
    schedule.start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    alive = schedule.is_alive()
    schedule.stop()

    assert calls[:3] == [("aws.events", "regseal-tuf")] * 3
    assert alive
    assert not schedule.is_alive()
