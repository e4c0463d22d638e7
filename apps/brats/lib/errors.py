"""Errors the app raises for bad requests.

MONAI Label 0.8.5 registers no exception handler of its own: an exception escaping an
endpoint becomes a bare ``500 Internal Server Error`` without a message (for example
``LocalDatastore.save_label`` raises ``ImageNotFoundException`` for an unknown image id).
Each error here is both a ``ValueError`` (or ``LookupError``), for code that calls the app
directly, and a FastAPI ``HTTPException``, so that the server answers with the right 4xx
status and ``{"detail": <message>}`` and keeps serving.
"""

from __future__ import annotations

from fastapi import HTTPException


class AppRequestError(ValueError, HTTPException):
    """A request the app refuses; ``status_code`` is the HTTP status the server answers with."""

    status_code_default: int = 400

    def __init__(self, message: str, status_code: int | None = None) -> None:
        ValueError.__init__(self, message)
        HTTPException.__init__(self, status_code=status_code or self.status_code_default, detail=message)


class ImageNotFoundError(AppRequestError, LookupError):
    """The image id is not in the datastore (HTTP 404)."""

    status_code_default = 404


class InvalidLabelError(AppRequestError):
    """An uploaded label is not a BraTS label map of the image's geometry (HTTP 422)."""

    status_code_default = 422


class FinalLabelProtectedError(AppRequestError):
    """A model output would be stored under the clinician tag ``final`` (HTTP 409)."""

    status_code_default = 409


class ModelNotTrainedError(AppRequestError):
    """The task needs a trained model and none has been published yet (HTTP 409)."""

    status_code_default = 409


class InvalidOptionError(AppRequestError):
    """An option value of the wrong kind: not a number, not true/false, not one of the listed
    choices (HTTP 422).  A value of the right kind outside its range is a plain 400."""

    status_code_default = 422


class InvalidNameError(AppRequestError):
    """A tag, image id or model name that is not a plain datastore name (HTTP 422 unless given)."""

    status_code_default = 422


class PathOutsideError(AppRequestError):
    """A path the app built resolves outside the folders the server may write (HTTP 403)."""

    status_code_default = 403


class UploadTooLargeError(AppRequestError):
    """An uploaded image exceeds the configured voxel or byte cap (HTTP 413)."""

    status_code_default = 413


class ForbiddenOriginError(AppRequestError):
    """A browser request from another site (its ``Origin`` is not allowed, HTTP 403)."""

    status_code_default = 403
