"""The generation farm (issue 20): batches generated and rendered on Ray workers.

Only ``settings`` is imported without a farm configured; ``cluster``, ``worker`` and
``client`` import Ray, and only when a build, watch or audition has a farm to use.
"""
