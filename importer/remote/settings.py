"""``[cache.remote]`` of ``trackspec.toml``: where the team cache lives, validated.

Only the location and behaviour are configured here. Credentials never are: they come
from the standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, ``~/.aws``, instance roles), so no secret ends up in the repo or the index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..fields import Field, FieldProblem, boolean, ranged, text

#: Keys people try to put credentials under; refused with a message saying where they go.
SECRET_KEYS = (
    "access_key",
    "access_key_id",
    "aws_access_key_id",
    "secret",
    "secret_key",
    "secret_access_key",
    "aws_secret_access_key",
    "session_token",
    "aws_session_token",
    "password",
    "credentials",
    "token",
)
SECRET_HINT = (
    "credentials never go in trackspec.toml (it is committed); set AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, in the environment of the build"
)


def _no_password(value: str) -> None:
    from ..grammar import has_userinfo, redact_url

    if has_userinfo(value):
        raise FieldProblem(f"{redact_url(value)!r} carries a user name or password; {SECRET_HINT}")


def _url(value: Any) -> str:
    text(required=True)(value)
    _no_password(value)
    scheme, sep, rest = value.partition("://")
    bucket = rest.split("/", 1)[0]
    if scheme != "s3" or not sep or not bucket:
        raise FieldProblem(f"{value!r} is not an S3 location; use s3://bucket or s3://bucket/prefix")
    return value


def _endpoint(value: Any) -> str:
    text(required=True)(value)
    _no_password(value)
    if not value.startswith(("http://", "https://")):
        raise FieldProblem(f"{value!r} is not an endpoint URL; use http://host:port or https://host")
    return value


REMOTE_FIELDS: dict[str, Field] = {
    "url": Field(_url, None, "s3://bucket/prefix where the team cache lives (required)"),
    "endpoint_url": Field(_endpoint, None, "S3 endpoint for SeaweedFS, MinIO, R2, ...; default: AWS"),
    "region": Field(text(required=True), None, "S3 region; default: from the AWS config chain"),
    "push": Field(boolean, False, "upload new entries after a successful build (CI, build farm)"),
    "timeout": Field(ranged(0.1, 600.0), 10.0, "seconds to wait for a connection or a reply"),
}


@dataclass(frozen=True)
class RemoteSettings:
    """The team cache tier: an S3 location, how to reach it, and whether builds push to it."""

    url: str
    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None
    push: bool = False
    timeout: float = 10.0

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> RemoteSettings:
        url = values["url"]
        bucket, _, prefix = url.partition("://")[2].partition("/")
        return cls(
            url=url.rstrip("/"),
            bucket=bucket,
            prefix=prefix.strip("/"),
            endpoint_url=values.get("endpoint_url"),
            region=values.get("region"),
            push=bool(values.get("push", False)),
            timeout=float(values.get("timeout", 10.0)),
        )
