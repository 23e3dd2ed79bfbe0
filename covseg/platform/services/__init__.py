"""The platform's rules, as functions over a SQLAlchemy session: testable without HTTP.

Every function takes the acting user where permissions matter and raises a
:class:`~covseg.platform.services.errors.ServiceError` subclass when the action is not allowed.
"""
