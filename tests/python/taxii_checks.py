"""Schemathesis hooks (SCHEMATHESIS_HOOKS=taxii_checks): checks of TAXII 2.1 error bodies.

Loaded by tests/tests/e2e/api_auth_and_openapi.rs, which runs `st run` against a live api.
"""

import json

import schemathesis

TAXII = "application/taxii+json;version=2.1"


@schemathesis.check
def taxii_error_body(ctx, response, case):
    """Every 4xx answer is a TAXII 2.1 error message (section 3.6.1) with the TAXII media type,
    whose http_status is the response's status as a string (as MITRE's server writes it)."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    if content_type.replace(" ", "") != TAXII:
        raise AssertionError(f"{response.status_code} with Content-Type {content_type!r}")
    try:
        body = json.loads(response.content)
    except ValueError as error:
        raise AssertionError(f"{response.status_code} body is not JSON: {error}") from None
    if not isinstance(body, dict) or not isinstance(body.get("title"), str):
        raise AssertionError(f"{response.status_code} body has no title: {body!r}")
    if body.get("http_status") != str(response.status_code):
        raise AssertionError(
            f"http_status {body.get('http_status')!r} for a {response.status_code} response"
        )
    return None
