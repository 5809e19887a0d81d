"""Threads: readers beside one writer see whole batches and whole values, in order."""

from __future__ import annotations

import threading

from raftstore.testing.harness import StoreHarness
from raftstore.testing.model import StoreModel
from raftstore.testing.suite.cases import SuiteSettings, entries, payload, stamp

__all__ = ["ThreadTests"]


class ThreadTests(SuiteSettings):
    """Reader threads never see a torn batch, a torn value or an index going back."""

    def test_readers_never_see_torn_values(self, harness: StoreHarness) -> None:
        """Reader threads during one writer see whole batches and whole values, in order."""
        store = harness.store
        batch_size, entry_size = 4, 256
        batches = self.concurrent_batches
        done = threading.Event()
        failures: list[BaseException] = []

        def write() -> None:
            try:
                for version in range(1, batches + 1):
                    first = (version - 1) * batch_size + 1
                    store.store_logs(entries(first, first + batch_size - 1, version, entry_size))
                    store.set(b"version", stamp(version))
                    store.set_uint64(b"version64", version)
            except BaseException as exc:
                failures.append(exc)
            finally:
                done.set()

        def read() -> None:
            last_seen = version_seen = number_seen = 0
            try:
                for ops in range(self.reader_max_ops):
                    if done.is_set() and ops >= 100:
                        break
                    last = store.last_index()
                    assert last % batch_size == 0, f"last_index {last} is inside a batch"
                    assert last >= last_seen, f"last_index went back from {last_seen} to {last}"
                    last_seen = last
                    if last:
                        assert store.first_index() == 1
                        log = store.get_log(last)
                        assert log.term == last // batch_size
                        assert log.data == payload(last, log.term, entry_size), "torn log data"
                    value = store.get(b"version")
                    if value is not None:
                        version = int.from_bytes(value[:8], "big")
                        assert value == stamp(version), "torn stable value"
                        assert version >= version_seen
                        version_seen = version
                    number = store.get_uint64(b"version64")
                    assert number >= number_seen
                    number_seen = number
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=write, name="raftstore-conformance-writer")]
        threads += [
            threading.Thread(target=read, name=f"raftstore-conformance-reader-{n}")
            for n in range(self.concurrent_readers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        model = StoreModel()
        for version in range(1, batches + 1):
            first = (version - 1) * batch_size + 1
            model.store_logs(entries(first, first + batch_size - 1, version, entry_size))
        model.set(b"version", stamp(batches))
        model.set_uint64(b"version64", batches)
        harness.verify(model)
