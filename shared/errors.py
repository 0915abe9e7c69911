"""Errors that end a request: each knows its HTTP status and a stable code for clients."""


class FakeFacesError(Exception):
    """A failure the caller can act on; never a bug in this code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(FakeFacesError):
    status, code = 400, "bad_request"


class UrlNotAllowed(FakeFacesError):
    status, code = 400, "url_not_allowed"


class NotFound(FakeFacesError):
    status, code = 404, "not_found"


class MethodNotAllowed(FakeFacesError):
    status, code = 405, "method_not_allowed"


class TooLarge(FakeFacesError):
    status, code = 413, "too_large"


class NotAnImage(FakeFacesError):
    status, code = 415, "not_an_image"


class NoFace(FakeFacesError):
    status, code = 422, "no_face"


class FetchFailed(FakeFacesError):
    status, code = 502, "fetch_failed"


class FetchTimeout(FakeFacesError):
    status, code = 504, "fetch_timeout"


class Busy(FakeFacesError):
    status, code = 503, "busy"


class ModelUnavailable(FakeFacesError):
    status, code = 503, "model_unavailable"


class ExplainUnavailable(FakeFacesError):
    status, code = 501, "explain_unavailable"


class FeedbackUnavailable(FakeFacesError):
    status, code = 503, "feedback_unavailable"


class StorageUnavailable(FakeFacesError):
    status, code = 503, "storage_unavailable"


class AlreadyStored(FakeFacesError):
    status, code = 409, "already_received"


class InvalidToken(FakeFacesError):
    status, code = 403, "invalid_token"


class ModelChanged(FakeFacesError):
    status, code = 409, "model_changed"


class PhotoMismatch(FakeFacesError):
    status, code = 422, "photo_mismatch"


class UnsupportedMediaType(FakeFacesError):
    status, code = 415, "unsupported_media_type"


class RateLimited(FakeFacesError):
    """Carries how many seconds to wait, for the Retry-After header and the JSON."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after

    def to_json(self) -> dict:
        doc = super().to_json()
        doc["error"]["retry_after"] = self.retry_after
        return doc
