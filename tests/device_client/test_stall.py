"""A download that stops making progress re-subscribes with backoff, then reports stalled and keeps its
spool, and finishes when the chunks come back."""

from __future__ import annotations

import time
from itertools import pairwise

from codec.status_message import read_status
from codec.topics import manifest_topic
from device_client.store import FileModelStore
from simulator.testbed import synthetic

MODEL = "digits"


def _half_delivered(make_device, retained, signing, base_model):
    release, expected = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    retained.add(release)
    device = make_device()
    updater = device.updaters[MODEL]
    updater.watch.least = 10.0
    updater.watch.monotonic = lambda: 1000.0  # everything arrives at once: the deadline is the least, and the
    # sums below are exact (at a real clock's magnitude start + 310 + 160 can round below start + 470)
    assert retained.pump(device, max_chunks=2) == 2
    lost = {t: m for t, m in retained.messages.items() if "/chunks/" in t and t in device.wanted_topics()}
    for topic in lost:  # the broker lost them (restarted without its database, or a prune)
        del retained.messages[topic]
    return device, updater, release, expected, lost


def test_no_progress_re_subscribes_with_backoff_then_reports_stalled(
    make_device, retained, signing, base_model
) -> None:
    device, updater, release, _, lost = _half_delivered(make_device, retained, signing, base_model)
    start = updater.watch.progress_at
    assert updater.resubscribe_due(start + 9.9) == set(), "within the deadline nothing happens"
    assert updater.resubscribe_due(start + 10.0) == set(lost) and not updater.stalled, "first retry at D"
    assert updater.resubscribe_due(start + 29.0) == set(), "the next one waits 2D more"
    assert updater.resubscribe_due(start + 30.0) == set(lost) and updater.stalled, "stalled from 3D on"
    status = read_status(device.status().to_json())
    assert status["state"] == "stalled" and status["last_error"] is None
    progress = status["progress"]
    assert progress["missing"] == release.manifest.chunk_count - 2
    assert progress["last_progress"] <= time.time() + 0.1 and progress["chunks_done"] == 2
    assert len(list(device.config.model_dir.glob(".spool/*/*/chunks/*"))) == 2, "the spool is kept"
    assert updater.resubscribe_due(start + 69.0) == set() and updater.resubscribe_due(start + 70.0), "7D"


def test_a_stalled_download_finishes_when_the_chunks_come_back(make_device, retained, signing, base_model) -> None:
    device, updater, _, expected, lost = _half_delivered(make_device, retained, signing, base_model)
    updater.resubscribe_due(updater.watch.progress_at + 10)
    updater.resubscribe_due(updater.watch.progress_at + 30)
    assert device.status().state == "stalled"
    retained.messages.update(lost)  # published again
    retained.pump(device)
    assert not updater.stalled and device.status().state == "idle"
    assert FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes() == expected


def test_the_deadline_follows_a_slow_link(make_device, retained, signing, base_model) -> None:
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], chunk_size=256)
    retained.add(release)
    device = make_device()
    updater = device.updaters[MODEL]
    updater.watch.least, now = 10.0, iter(range(0, 1000, 30))  # something arrives every 30 s
    updater.watch.monotonic = lambda: float(next(now))
    retained.pump(device, max_chunks=2)  # the manifest at 0 s, chunks at 30 and 60 s
    assert updater.watch.deadline() == 300.0, "ten times the 30 s between arrivals, not the least 10 s"
    assert updater.resubscribe_due(359.0) == set() and updater.resubscribe_due(360.0)


def test_a_new_manifest_ends_a_stall(make_device, retained, signing, base_model) -> None:
    device, updater, *_ = _half_delivered(make_device, retained, signing, base_model)
    updater.resubscribe_due(updater.watch.progress_at + 10)
    updater.resubscribe_due(updater.watch.progress_at + 30)
    newer, expected = synthetic.make_delta_release(base_model, 3, MODEL, 3, signing[0], chunk_size=256)
    retained.add(newer)
    device.handle(manifest_topic(MODEL), newer.envelope)
    assert not updater.stalled
    retained.pump(device)
    assert FileModelStore(device.config.model_dir).model_path(MODEL).read_bytes() == expected


def test_re_subscriptions_go_on_at_most_sixteen_deadlines_apart(make_device, retained, signing, base_model) -> None:
    device, updater, *_ = _half_delivered(make_device, retained, signing, base_model)
    start, due = updater.watch.progress_at, []
    for second in range(0, 2000, 10):
        if updater.resubscribe_due(start + second):
            due.append(second)
    assert due[:5] == [10, 30, 70, 150, 310] and {b - a for a, b in pairwise(due[4:])} == {160}
