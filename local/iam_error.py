"""IAM's error document (query protocol), as the local IAM layers answer with it.

IAM answers every error as XML with the code in <Code> and the HTTP status of that code (AccessDenied
403, NoSuchEntity 404, EntityAlreadyExists / LimitExceeded / DeleteConflict /
ConcurrentModification 409, ServiceFailure 500, Throttling 400): the SDK reads the code from it.
"""

from __future__ import annotations

import uuid
from xml.sax.saxutils import escape

from .proxy import Exchange, Reply


class IamError(Reply):
    """Answers with an IAM error document instead of forwarding."""

    def __init__(self, status: int, code: str, message: str, error_type: str = "Sender"):
        self.status = status
        self.code = code
        self.message = message
        self.error_type = error_type

    def body(self) -> bytes:
        return (
            '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
            f"<Error><Type>{self.error_type}</Type><Code>{self.code}</Code>"
            f"<Message>{escape(self.message)}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        ).encode()

    def apply(self, exchange: Exchange) -> str:
        exchange.send(self.status, [("Content-Type", "text/xml"),
                                    ("x-amzn-RequestId", str(uuid.uuid4()))], self.body())
        return f"injected {self.code}"
