"""The S3 object store (boto3): AWS, SeaweedFS, MinIO, R2, ... through one API.

Conditional creates use ``If-None-Match: *`` (``put_object`` and, for large files,
``complete_multipart_upload``), so two writers of one name never overwrite each other:
the loser gets 412 and keeps the winner's object. boto3 is imported when a store is
made, which happens only when the team cache is actually consulted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .settings import RemoteSettings
from .store import ObjectInfo, StoreError

log = logging.getLogger(__name__)

#: Files at least this big go up in parts (S3's single PUT tops out at 5 GiB; parts retry alone).
MULTIPART_BYTES = 64 * 1024**2
PART_BYTES = 16 * 1024**2

_AUTH_CODES = {
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "AuthorizationHeaderMalformed",
    "UnrecognizedClientException",
}
_MISSING = {"NoSuchKey", "404", "NotFound"}
_EXISTS = {"PreconditionFailed", "412"}


class S3Store:
    """Objects under ``s3://bucket/prefix``; every name is relative to the prefix."""

    def __init__(self, settings: RemoteSettings, multipart_bytes: int = MULTIPART_BYTES, part_bytes: int = PART_BYTES):
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise StoreError(
                "error", f"the S3 client is not installed ({exc}); pip install 'trackspec[remote]'"
            ) from None
        self.settings = settings
        self.location = settings.url
        self.multipart_bytes = multipart_bytes
        self.part_bytes = part_bytes
        config = Config(
            connect_timeout=settings.timeout,
            read_timeout=settings.timeout,
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=16,
            s3={"addressing_style": "path"} if settings.endpoint_url else None,
        )
        try:
            self.client = boto3.session.Session().client(
                "s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=config
            )
        except Exception as exc:  # a broken AWS config file, an unknown profile, ...
            raise StoreError("error", f"cannot set up the S3 client: {exc}") from None

    def _key(self, name: str) -> str:
        return f"{self.settings.prefix}/{name}" if self.settings.prefix else name

    # -------------------------------------------------------------- operations
    def get_bytes(self, name: str) -> bytes | None:
        try:
            return self._call(self.client.get_object, Key=self._key(name))["Body"].read()
        except _Missing:
            return None

    def download(self, name: str, target: Path) -> bool:
        try:
            response = self._call(self.client.get_object, Key=self._key(name))
        except _Missing:
            return False
        body = response["Body"]
        try:
            with open(target, "wb") as fh:
                for chunk in body.iter_chunks(1024 * 1024):
                    fh.write(chunk)
        except OSError:
            raise
        except Exception as exc:  # the connection broke mid-object
            raise self._translate(exc) from None
        return True

    def exists(self, name: str) -> bool:
        try:
            self._call(self.client.head_object, Key=self._key(name))
        except _Missing:
            return False
        return True

    def put_if_absent(self, name: str, source: Path | bytes) -> bool:
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        try:
            if isinstance(source, Path) and size >= self.multipart_bytes:
                self._multipart_if_absent(self._key(name), source)
            elif isinstance(source, bytes):
                self._call(self.client.put_object, Key=self._key(name), Body=source, IfNoneMatch="*")
            else:
                with open(source, "rb") as fh:
                    self._call(self.client.put_object, Key=self._key(name), Body=fh, IfNoneMatch="*")
        except _Exists:
            return False
        return True

    def delete(self, name: str) -> None:
        self._call(self.client.delete_object, Key=self._key(name))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self._key("")
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"][len(base) :], int(item["Size"]), item["LastModified"].timestamp())
        except Exception as exc:
            raise self._translate(exc) from None

    # -------------------------------------------------------------- mechanics
    def _multipart_if_absent(self, key: str, source: Path) -> None:
        """Upload in parts; the object appears only at the (conditional) completion."""
        upload = self._call(self.client.create_multipart_upload, Key=key)["UploadId"]
        try:
            parts = []
            with open(source, "rb") as fh:
                number = 1
                while chunk := fh.read(self.part_bytes):
                    done = self._call(self.client.upload_part, Key=key, UploadId=upload, PartNumber=number, Body=chunk)
                    parts.append({"PartNumber": number, "ETag": done["ETag"]})
                    number += 1
            self._call(
                self.client.complete_multipart_upload,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.settings.bucket, Key=key, UploadId=upload)
            except Exception:
                log.debug("could not abort multipart upload %s", upload, exc_info=True)
            raise

    def _call(self, method: Any, **kwargs: Any) -> Any:
        try:
            return method(Bucket=self.settings.bucket, **kwargs)
        except Exception as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: Exception) -> Exception:
        """botocore's exceptions as ``StoreError`` (or the internal missing/exists signals)."""
        from botocore import exceptions as bx

        where = self.settings.endpoint_url or "AWS S3"
        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            detail = f"{code}: {error.get('Message') or exc}"
            if code in _MISSING or status == 404 and code != "NoSuchBucket":
                return _Missing()
            if code in _EXISTS or status == 412:
                return _Exists()
            if code == "NoSuchBucket":
                return StoreError("missing_bucket", f"bucket {self.settings.bucket!r} does not exist ({detail})")
            if code in _AUTH_CODES:
                return StoreError("auth", f"the credentials were refused ({detail})")
            if code == "AccessDenied" or status == 403:
                return StoreError("denied", f"access denied ({detail})")
            return StoreError("error", f"the S3 request failed ({detail})")
        if isinstance(exc, bx.NoCredentialsError):
            return StoreError(
                "auth", "no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            )
        if isinstance(
            exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError, bx.ConnectionClosedError)
        ):
            return StoreError("unreachable", f"{where} is unreachable ({exc})")
        if isinstance(exc, bx.BotoCoreError):
            return StoreError("error", f"the S3 client failed ({type(exc).__name__}: {exc})")
        if isinstance(exc, (StoreError, _Missing, _Exists)):
            return exc
        return StoreError("error", f"{type(exc).__name__}: {exc}")


class _Missing(Exception):
    """No such object (internal: answered as ``None``/``False``)."""


class _Exists(Exception):
    """A conditional create found the name taken (internal: answered as ``False``)."""
