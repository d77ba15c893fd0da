"""Renders on worker threads, handed back to the caller's thread in the caller's order.

A render spends its time in libsoxr and in ffmpeg subprocesses, neither of which holds
the GIL, so threads keep the cores busy without a process pool (nothing to pickle, no
second copy of the audio). The pool only runs renders: whoever submits them publishes
the results on its own thread, in submission order (``InOrder``), so the index, the
state file and the reporter never see a second thread, and a build's output does not
depend on which render happened to finish first.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor


class RenderJob:
    """One submitted render: its future, and how long the render itself took."""

    def __init__(self) -> None:
        self.future: Future[Any] | None = None
        #: Seconds the work ran (set on the worker before the future completes, so it is
        #: final once ``wait`` returns); time spent queued is not counted.
        self.seconds = 0.0

    def wait(self) -> None:
        """Block until the render has finished or failed; raises nothing."""
        from concurrent.futures import wait

        assert self.future is not None
        wait([self.future])

    def done(self) -> bool:
        assert self.future is not None
        return self.future.done()

    def failed(self) -> bool:
        """Whether the finished render raised (call after ``wait``)."""
        assert self.future is not None
        return self.future.exception() is not None

    def result(self) -> Any:
        """The render's return value; its exception, unchanged, if it failed."""
        assert self.future is not None
        return self.future.result()


class RenderPool:
    """Runs at most ``workers`` renders at once.

    Threads start on the first ``submit``, so a build with nothing to render starts none
    (and imports nothing more). Leaving the ``with`` block waits for running renders;
    after an error (Ctrl-C included) renders still queued are cancelled first.
    """

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> RenderJob:
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="trackspec-render")
        job = RenderJob()

        def timed() -> Any:
            start = time.monotonic()
            try:
                return fn(*args)
            finally:
                job.seconds = time.monotonic() - start

        job.future = self._executor.submit(timed)
        return job

    def close(self, cancel: bool = False) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=cancel)
            self._executor = None

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.close(cancel=exc_type is not None)


class InOrder:
    """Callbacks run on the caller's thread in the order they were added, each only once
    its job (if it has one) is done: results come out as a sequential run would give them."""

    def __init__(self) -> None:
        self._queue: deque[tuple[RenderJob | None, Callable[[], Any]]] = deque()

    def add(self, job: RenderJob | None, then: Callable[[], Any]) -> None:
        self._queue.append((job, then))

    def run_ready(self) -> None:
        """Run the callbacks at the head whose jobs are done, without waiting for any."""
        while self._queue and (self._queue[0][0] is None or self._queue[0][0].done()):
            _, then = self._queue.popleft()
            then()

    def run_all(self) -> None:
        """Run every callback, waiting for each job in turn."""
        while self._queue:
            job, then = self._queue.popleft()
            if job is not None:
                job.wait()
            then()

    def __len__(self) -> int:
        return len(self._queue)
