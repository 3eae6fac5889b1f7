"""Names, version strings and references (``driver_stats@v2:trips_today``, ``prod/driver_stats@v1``).

Names end up in table names, so the rule is strict: ``^[A-Za-z][A-Za-z0-9_]{0,62}$``. ``@`` and
``:`` are reserved for references and get their own message.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from feature_rollout.core.errors import InvalidNameError, InvalidReferenceError, InvalidVersionError

NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
# ASCII only: re.IGNORECASE alone lets U+017F (long s) stand for "s". Nine digits are plenty and keep int() cheap.
_VERSION_PATTERN = re.compile(r"(?:v|version)([0-9]{1,9})", re.IGNORECASE | re.ASCII)
LATEST = "latest"


def validate_name(name: object, what: str) -> str:
    """Return ``name`` if it is a valid object name, else raise :class:`InvalidNameError`.

    :param name: the candidate name.
    :param what: what is being named, for the message (``"feature view"``, ``"field of driver_stats"``).
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"The {what} name must be a string, got {type(name).__name__} {name!r}.")
    for reserved in ("@", ":"):
        if reserved in name:
            raise InvalidNameError(
                f"The {what} name {name!r} contains '{reserved}', which is reserved for references such as "
                f"'driver_stats@v2:trips_today'. Rename it without '@' and ':'."
            )
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidNameError(
            f"The {what} name {name!r} is not allowed: names start with a letter, contain only letters, digits "
            f"and '_', and are at most 63 characters long (pattern ^[A-Za-z][A-Za-z0-9_]{{0,62}}$)."
        )
    return name


def parse_version(text: object, what: str = "version") -> int | None:
    """Parse a version string: ``"latest"`` gives ``None``; ``"v2"``/``"version2"`` (any case) give ``2``.

    Surrounding spaces are not forgiven: ``"latest "`` is an error, because a definition that reads
    one way and is stored another is worse than a loud failure.
    """
    if isinstance(text, str):
        if text.lower() == LATEST:
            return None
        match = _VERSION_PATTERN.fullmatch(text)
        if match:
            return int(match.group(1))
    raise InvalidVersionError(
        f"{text!r} is not a valid {what}: use 'latest', or 'vN' / 'versionN' with a whole number N >= 0 "
        "(for example 'v2')."
    )


def format_version(number: int | None) -> str:
    return LATEST if number is None else f"v{number}"


@dataclass(frozen=True)
class FeatureRef:
    """``view[@version]:feature``; ``version`` is ``None`` for the active version."""

    view: str
    feature: str
    version: int | None = None

    def __str__(self) -> str:
        return f"{self.view}{_at(self.version)}:{self.feature}"


@dataclass(frozen=True)
class ViewRef:
    """``[workspace/]view[@version]``, as used by parity; ``None`` parts mean the default."""

    view: str
    version: int | None = None
    workspace: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.workspace}/" if self.workspace else ""
        return f"{prefix}{self.view}{_at(self.version)}"


def _at(version: int | None) -> str:
    return "" if version is None else f"@v{version}"


def parse_feature_ref(text: object) -> FeatureRef:
    """Parse ``fv:feat``, ``fv@v2:feat`` or ``fv@latest:feat``."""
    if not isinstance(text, str) or text.count(":") != 1:
        raise InvalidReferenceError(
            f"{text!r} is not a feature reference: write 'view:feature', 'view@vN:feature' or 'view@latest:feature'."
        )
    head, feature = text.split(":")
    view, version = _split_version(head, text)
    return FeatureRef(view=validate_name(view, "feature view"), feature=validate_name(feature, "feature"),
                      version=version)


def parse_view_ref(text: object) -> ViewRef:
    """Parse ``view``, ``view@vN``, ``workspace/view`` or ``workspace/view@vN``."""
    if not isinstance(text, str) or ":" in text or text.count("/") > 1:
        raise InvalidReferenceError(
            f"{text!r} is not a feature view reference: write 'view', 'view@vN', 'workspace/view' or "
            "'workspace/view@vN'."
        )
    workspace: str | None = None
    if "/" in text:
        workspace, text_rest = text.split("/")
        validate_name(workspace, "workspace")
    else:
        text_rest = text
    view, version = _split_version(text_rest, text)
    return ViewRef(view=validate_name(view, "feature view"), version=version, workspace=workspace)


def _split_version(head: str, whole: str) -> tuple[str, int | None]:
    if head.count("@") > 1:
        raise InvalidReferenceError(f"{whole!r} has more than one '@'; write 'view@vN'.")
    if "@" not in head:
        return head, None
    view, version_text = head.split("@")
    return view, parse_version(version_text, what=f"version in {whole!r}")


# PostgreSQL truncates identifiers beyond 63 bytes, which could make two tables one. Longer names
# keep a readable prefix and end in a hash of the full name (docs/adr/0004-online-table-names.md).
MAX_IDENTIFIER_LENGTH = 63


def online_table_name(workspace: str, view: str, version: int) -> str:
    """``{workspace}_{view}`` for v0 and ``{workspace}_{view}_v{N}`` after, as in Feast."""
    name = f"{workspace}_{view}" if version == 0 else f"{workspace}_{view}_v{version}"
    if len(name) <= MAX_IDENTIFIER_LENGTH:
        return name
    suffix = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[:MAX_IDENTIFIER_LENGTH - 13]}_{suffix}"
