"""``trackspec watch``: the development daemon.

It decides *when* to run the build's pipeline, never *how*: file events are filtered and
debounced (``events``), the quick work (restores, re-encodes, index-only changes,
removals) runs in a planning cycle on the main thread (``daemon``), and generation goes
to one worker thread that keeps the model loaded (``worker``). The worker only fills the
cache; the next cycle publishes, so a track is published only while its spec still asks
for exactly that audio.
"""
