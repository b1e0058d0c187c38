"""Opening a tar archive nobody vouches for (``runs import``, a required archive).

``tarfile`` reads a pax extended header or a GNU long name whole into memory before it parses
it, at whatever size the header claims: a gzip bomb of one such header (4.6 MB compressed, 1 GB
of zeros) made ``runs import`` hold 1 GB, and a bigger one would be killed for memory. Real
headers of that kind hold a few names and numbers, so one over ``MAX_HEADER`` ends the read as a
damaged archive (``tarfile.ReadError``) before anything is read into memory.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

MAX_HEADER = 1 << 20  # bytes of one pax header or GNU long name/link; real ones hold a few hundred
_EXTENSIONS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
               tarfile.GNUTYPE_LONGLINK)


class HeaderTooBig(tarfile.ReadError):
    """A pax header or GNU long name bigger than ``MAX_HEADER``."""


class _Bounded(tarfile.TarInfo):
    def _proc_member(self, tarfile_: tarfile.TarFile) -> Any:
        if self.type in _EXTENSIONS and self.size > MAX_HEADER:
            raise HeaderTooBig(f"a member header extension of {self.size} bytes (at most {MAX_HEADER})")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def open_tar(path: Path) -> tarfile.TarFile:
    """``path`` opened for reading (compressed or not), header extensions bounded."""
    return tarfile.open(path, "r:*", tarinfo=_Bounded)
