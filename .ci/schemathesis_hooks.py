"""Schemathesis hooks for chatsys (loaded by .ci/schemathesis.sh through SCHEMATHESIS_HOOKS).

An Idempotency-Key is, by API.md, remembered for 24 hours: a repeat with another body must
answer 422. Generated requests reuse keys with different bodies, which would make the server
answer 422 to schema-valid requests, correctly. So every *valid* generated key is replaced
by a fresh one; invalid ones (the negative cases) are kept as generated.
"""
import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[!-~]{1,255}$")


@schemathesis.hook
def map_headers(ctx, headers):
    if headers:
        for name in list(headers):
            if name.lower() == "idempotency-key" and isinstance(headers[name], str) and VALID_KEY.match(headers[name]):
                headers[name] = f"st-{uuid.uuid4()}"
    return headers
