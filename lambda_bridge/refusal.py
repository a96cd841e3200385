"""Why a connection was refused. Every refusal has a short, fixed reason, one
of lambda_bridge.vocabulary.Reason (the log and the tests key on it), and maybe
a detail for the log — never a token or key material."""


class Refused(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
