"""MONAI Label's sessions, off by default, and capped when switched on (``--conf sessions true``).

What a session is for.  3D Slicer's MONAILabel module uploads a volume the user opened locally
(one not fetched with *Next Sample*) with ``PUT /session/`` and then runs ``/infer`` with the
returned ``session_id``; volumes fetched from the datastore never use one.  This app segments
the 4 modalities it keeps under ``STUDIES/modalities/`` for datastore images, so sessions add
nothing to its workflow, and they are off unless the server runs with ``--conf sessions true``
(``lib/server_guards.py`` answers ``/session`` and ``session_id`` with 403 naming the key).

Why not the stock store.  MONAI Label 0.8.5's :class:`~monailabel.utils.sessions.Sessions` keeps
uploads in ``~/.cache/monailabel/sessions`` (outside the folders this server may write) for an
hour; ``uncompress=true`` runs :func:`shutil.unpack_archive` on whatever was sent, so a 204 KB
ZIP inflated to 201 MB, and a file that is not an archive was a bare 500 that left an empty
``tmpXXXX/`` in the temp folder.  :class:`CappedSessions`:

* keeps sessions in the system temp folder (``<TMPDIR>/robustlabel-sessions``), unless
  ``MONAI_LABEL_SESSION_PATH`` names another place; expired ones are removed by MONAI Label's
  own clean-up (``MONAI_LABEL_SESSION_EXPIRY``, 3600 s);
* refuses a session whose upload is over ``max_upload_bytes`` (413), and a new session while the
  store holds more than :data:`STORE_FACTOR` times that (413);
* unpacks ZIP archives only, itself: the sum of the members' declared sizes must stay under the
  cap before anything is written (the ``zipfile`` reader never yields more than a member
  declares, and checks its CRC), every member must be a plain relative name (no ``..``, no
  absolute path), and the bytes written are counted again while copying.  Anything else is a 422
  naming ``files``, and nothing is left behind.  An archive of one file gives a session whose
  image is that file (stock: the folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import PurePosixPath
from typing import Any

from monailabel.config import settings
from monailabel.utils.sessions import Sessions

from .errors import InvalidLabelError, UploadTooLargeError
from .uploads import remove_path

#: the store may hold at most this many times ``max_upload_bytes``
STORE_FACTOR = 8
#: name of the store under the system temp folder
STORE_NAME = "robustlabel-sessions"
_CHUNK = 1 << 20


def folder_bytes(path: str) -> int:
    """Bytes of a file, or of every file below a folder (links not followed)."""
    if not os.path.isdir(path):
        return os.path.getsize(path) if os.path.exists(path) else 0
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
               if not os.path.islink(os.path.join(root, f)))


def safe_member(name: str) -> bool:
    """A ZIP member name that stays inside the folder it is extracted to."""
    path = PurePosixPath(name.replace("\\", "/"))
    return bool(name) and not path.is_absolute() and ".." not in path.parts and ":" not in name


class CappedSessions(Sessions):
    """:class:`~monailabel.utils.sessions.Sessions` in the temp folder, capped (module docstring)."""

    def __init__(self, store_path: str, expiry: int, max_bytes: int) -> None:
        super().__init__(store_path, expiry)
        self.max_bytes = int(max_bytes)
        os.makedirs(self.store_path, exist_ok=True)

    @classmethod
    def from_settings(cls, max_bytes: int) -> CappedSessions:
        """The store MONAI Label's settings name, or ``<TMPDIR>/robustlabel-sessions``."""
        store = (settings.MONAI_LABEL_SESSION_PATH or "").strip() or os.path.join(tempfile.gettempdir(), STORE_NAME)
        return cls(store, settings.MONAI_LABEL_SESSION_EXPIRY, max_bytes)

    def _unzip(self, archive: str) -> str:
        """Unpack a ZIP archive into a new folder of the store, within the cap; the folder."""
        if not zipfile.is_zipfile(archive):
            raise InvalidLabelError("files: uncompress=true needs a ZIP archive; the upload is not one")
        target = os.path.join(self.store_path, f"unpacked-{uuid.uuid4().hex}")
        try:
            with zipfile.ZipFile(archive) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                bad = [m.filename for m in zf.infolist() if not safe_member(m.filename)]
                if bad:
                    raise InvalidLabelError(f"files: archive member {bad[0]!r} would land outside its folder")
                declared = sum(m.file_size for m in members)
                if declared > self.max_bytes:
                    raise UploadTooLargeError(f"files: the archive unpacks to {declared} bytes, over the cap of "
                                              f"{self.max_bytes} bytes (--conf max_upload_bytes)")
                written = 0
                for member in members:
                    dest = os.path.join(target, *PurePosixPath(member.filename.replace("\\", "/")).parts)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with zf.open(member) as src, open(dest, "wb") as out:
                        while chunk := src.read(_CHUNK):
                            written += len(chunk)
                            if written > self.max_bytes:
                                raise UploadTooLargeError(f"files: the archive unpacks to more than {self.max_bytes}"
                                                          f" bytes (--conf max_upload_bytes)")
                            out.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, RuntimeError) as exc:
            remove_path(target)
            raise InvalidLabelError(f"files: the ZIP archive cannot be read ({type(exc).__name__}: {exc})") from None
        except BaseException:
            remove_path(target)
            raise
        if not written and not os.path.isdir(target):
            raise InvalidLabelError("files: the ZIP archive holds no file")
        return target

    def add_session(self, data_file: str, expiry: int = 0, uncompress: bool = False,
                    session_id: Any = None) -> Any:
        """The stock ``add_session`` after the caps, with the app's own ZIP unpacking.

        Raises:
            UploadTooLargeError: the upload, its unpacked content, or the store over its cap (413).
            InvalidLabelError: ``uncompress`` of something that is not a readable, safe ZIP (422).
        """
        size = folder_bytes(data_file)
        if size > self.max_bytes:
            raise UploadTooLargeError(f"files: {size} bytes is over the cap of {self.max_bytes} bytes "
                                      f"(--conf max_upload_bytes)")
        held = folder_bytes(self.store_path)
        if held + size > STORE_FACTOR * self.max_bytes:
            raise UploadTooLargeError(f"files: the session store holds {held} bytes; a new session would pass its "
                                      f"cap of {STORE_FACTOR} x max_upload_bytes (sessions expire after "
                                      f"{self.expiry} s)")
        unpacked = None
        if uncompress and not os.path.isdir(data_file):
            unpacked = self._unzip(data_file)
            entries = os.listdir(unpacked)
            single = os.path.join(unpacked, entries[0]) if len(entries) == 1 else None
            # one file in the archive: the session image is that file, as for a plain upload
            data_file = single if single is not None and os.path.isfile(single) else unpacked
        try:
            return super().add_session(data_file, expiry=expiry, uncompress=False, session_id=session_id)
        finally:
            if unpacked is not None and os.path.exists(unpacked):
                shutil.rmtree(unpacked, ignore_errors=True)
