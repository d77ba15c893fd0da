"""The team cache: a second cache tier under the local one, in shared object storage.

``settings`` parses ``[cache.remote]``; ``store`` is the seam for object stores (what a
GCS or Azure store would implement), ``s3`` the S3 implementation (boto3, imported only
when the tier is first used); ``tier`` keeps cache entries in any store (content-addressed
blobs, the manifest last as the commit point); ``session`` is what a build or command
holds: it feeds the local cache, pushes, and turns failures into one warning (or an
error with ``--require-remote``). Nothing here is imported by a no-op build or ``--check``.
"""
