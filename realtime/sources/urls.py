"""Source names: which kind of source a ``--source`` is (webcam, stream, file), and credentials hidden in any text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from realtime.errors import SourceError

NETWORK_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "http", "https")

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?")
# Greedy up to the last "@" before the first "/": passwords sometimes contain a raw "@".
_USERINFO_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s'\"]*@")
_SECRET_QUERY_RE = re.compile(
    r"(?i)([?&;](?:password|passwd|pass|pwd|user|username|token|access_token|auth|key|api_key|signature|sig)=)"
    r"[^&;\s'\"#]*"
)
_WEBCAM_DEV_RE = re.compile(r"^/dev/video\d+$")


def redact(text: str) -> str:
    """Hide credentials in every URL inside ``text``: ``rtsp://user:pw@host`` -> ``rtsp://***@host``.

    Also hides secret-looking query parameters (``?password=``, ``token=``...). Safe on any text (error messages,
    tracebacks), not just a bare URL.
    """
    text = _USERINFO_RE.sub(r"\1***@", str(text))
    return _SECRET_QUERY_RE.sub(r"\1***", text)


def _one_line(text: object) -> str:
    return " ".join(redact(str(text)).split())


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A parsed source: ``kind`` is "webcam", "stream" or "file"; ``target`` what OpenCV/PyAV open."""

    kind: str
    target: str | int
    source_id: str  # redacted, for logs and Frame.source_id


def parse_source(spec: str | Path) -> SourceSpec:
    """Classify ``spec`` (digits = webcam index, known URL scheme = stream, else a file). Raises SourceError."""
    text = str(spec).strip()
    if not text:
        raise SourceError("empty video source: pass a file path, a webcam index such as 0, or an rtsp:// URL")
    if text.isdigit():
        return SourceSpec("webcam", int(text), f"webcam:{int(text)}")
    if _WEBCAM_DEV_RE.match(text):
        return SourceSpec("webcam", text, text)
    m = _SCHEME_RE.match(text)
    # "C:\clip.mp4" / "c:clip.mp4" are Windows paths, not URLs: a one-letter scheme without "//" is a drive.
    if m and (m.group(2) or len(m.group(1)) > 1):
        scheme = m.group(1).lower()
        if scheme in NETWORK_SCHEMES and m.group(2):
            return SourceSpec("stream", text, redact(text))
        raise SourceError(
            f"unsupported source scheme '{m.group(1)}:' in {redact(text)}: use a file path, a webcam index "
            f"such as 0, or an {', '.join(s + '://' for s in NETWORK_SCHEMES)} URL"
        )
    return SourceSpec("file", text, text)
