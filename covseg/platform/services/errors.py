"""Errors the services raise; the API and pages turn each into one HTTP status."""


class ServiceError(Exception):
    """Base of every refusal; the message is shown to the user as is."""

    status_code = 400


class Invalid(ServiceError):
    """The request itself is malformed or breaks a rule (bad upload, phase closed...)."""

    status_code = 400


class NotAuthenticated(ServiceError):
    """No valid (unexpired) session."""

    status_code = 401


class Forbidden(ServiceError):
    """The user may not do this (not approved, not an organizer, another team's object)."""

    status_code = 403


class NotFound(ServiceError):
    """No such object, or one the user may not know exists (hidden boards, other teams)."""

    status_code = 404


class Conflict(ServiceError):
    """The object already exists (email taken, already in a team)."""

    status_code = 409


class TooLarge(ServiceError):
    """The upload is over the size limit."""

    status_code = 413


class LimitReached(ServiceError):
    """The team has used its submissions or attempts for the rolling 24 h."""

    status_code = 429


class TooManyAttempts(LimitReached):
    """Too many failed log-ins from this account or address; ``retry_after_s`` says when."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Busy(ServiceError):
    """The server cannot take this now (every password-hashing slot is taken)."""

    status_code = 503
