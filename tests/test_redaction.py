"""A stored failure keeps the HTTP requests its exception carries without their credentials."""

from __future__ import annotations

import urllib.request
from collections import namedtuple

import requests
from azure.core.rest import HttpRequest

from asjob.failures import decode_failure, encode_failure
from asjob.redaction import REDACTED, redacted_url


class CallFailed(Exception):
    def __init__(self, message: str, response: requests.Response) -> None:
        super().__init__(message)
        self.response = response


def _failed_call() -> CallFailed:
    request = requests.Request(
        "PUT",
        "https://example.invalid/vms/vm1?api-version=2024-07-01&sig=abc123",
        headers={"Authorization": "Bearer t0ken", "X-Ms-Client-Request-Id": "r1"},
        cookies={"session": "c00kie"},
        json={"adminPassword": "pa55"},
    ).prepare()
    response = requests.Response()
    response.status_code = 409
    response.request = request
    response.headers["Retry-After"] = "3"
    response._content = b'{"error": {"code": "Conflict"}}'
    return CallFailed("conflict", response)


def test_a_request_in_a_failure_loses_its_credentials_and_body_only() -> None:
    stored = encode_failure(_failed_call())
    for secret in (b"t0ken", b"c00kie", b"pa55", b"abc123"):
        assert secret not in stored

    rebuilt = decode_failure(stored)
    assert isinstance(rebuilt, CallFailed) and str(rebuilt) == "conflict"
    response = rebuilt.response
    assert response.status_code == 409 and response.headers["Retry-After"] == "3"
    assert response.json() == {"error": {"code": "Conflict"}}
    request = response.request
    assert request.method == "PUT" and request.body is None
    assert request.headers["authorization"] == REDACTED  # still case-insensitive
    assert request.headers["X-Ms-Client-Request-Id"] == "r1"
    assert request.url == "https://example.invalid/vms/vm1?api-version=2024-07-01&sig=REDACTED"


def test_the_live_exception_keeps_its_request() -> None:
    failed = _failed_call()
    encode_failure(failed)
    assert failed.response.request.headers["Authorization"] == "Bearer t0ken"


def test_an_azure_core_request_is_redacted() -> None:
    request = HttpRequest(
        "POST", "http://127.0.0.1/token", headers={"X-IDENTITY-HEADER": "h"}, data={"s": "v"}
    )
    rebuilt = decode_failure(encode_failure(ValueError(request)))
    [kept] = rebuilt.args
    assert kept.headers["X-IDENTITY-HEADER"] == REDACTED
    assert kept.content is None and kept.url == "http://127.0.0.1/token"


def test_a_url_without_credentials_is_kept_as_it_is() -> None:
    url = "https://management.azure.com/subscriptions/s?api-version=2024-07-01&$top=5"
    assert redacted_url(url) == url


def _stored_holds(secret: str, exc: BaseException) -> bool:
    return secret.encode() in encode_failure(exc)


def test_a_signature_is_redacted_wherever_a_url_holds_it() -> None:
    response = requests.Response()
    response.status_code = 403
    response.url = "https://acct.blob.example.invalid/c/b?sv=2024&sig=s1gnature"
    error = requests.HTTPError(
        "403 Client Error for url: https://acct.blob.example.invalid/c/b?sv=2024&sig=s1gnature",
        response=response,
    )
    assert not _stored_holds("s1gnature", error)
    rebuilt = decode_failure(encode_failure(error))
    assert isinstance(rebuilt, requests.HTTPError)
    assert rebuilt.response.url == "https://acct.blob.example.invalid/c/b?sv=2024&sig=REDACTED"
    assert "sv=2024&sig=REDACTED" in str(rebuilt)


def test_a_connection_error_keeps_no_signature_in_its_message_or_traceback() -> None:
    try:
        requests.get("http://127.0.0.1:1/c/b?sig=s1gnature&code=fUnct10nkey", timeout=5)
    except requests.ConnectionError as exc:
        error = exc
    stored = encode_failure(error)
    assert b"s1gnature" not in stored and b"fUnct10nkey" not in stored
    assert isinstance(decode_failure(stored), requests.ConnectionError)


RequestInfo = namedtuple("RequestInfo", ["url", "method", "headers"])  # as aiohttp's


class _SlottedRequest:
    __slots__ = ("body", "headers", "method", "url")

    def __init__(self) -> None:
        self.method, self.url = "GET", "http://127.0.0.1/"
        self.headers, self.body = {"Authorization": "Bearer t0ken"}, b"pa55"


def test_requests_of_other_libraries_and_shapes_are_redacted() -> None:
    carried = [
        urllib.request.Request(
            "http://127.0.0.1/x?sig=t0ken", data=b"pa55", headers={"Authorization": "t0ken"}
        ),
        requests.Request("GET", "http://127.0.0.1/", params={"sig": "t0ken"}, auth=("u", "pa55")),
        RequestInfo("http://127.0.0.1/", "GET", {"Authorization": "Bearer t0ken"}),
        _SlottedRequest(),
    ]
    for request in carried:
        assert not _stored_holds("t0ken", ValueError(request)), request
        assert not _stored_holds("pa55", ValueError(request)), request


def test_credentials_in_text_are_redacted_in_their_common_forms() -> None:
    secret = "S3CRET"
    texts = [
        f"Server=db;Password='{secret}';",
        f'login password="{secret} two"',
        f"(AccountKey={secret}==)",
        f"failed:sig={secret}",
        f"redis://:{secret}@127.0.0.1",
        f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={secret};EndpointSuffix=x",
    ]
    for text in texts:
        assert secret not in decode_failure(encode_failure(ValueError(text))).args[0], text
    assert "region_code=weu" in str(decode_failure(encode_failure(ValueError("region_code=weu"))))
    # "code" is a credential (an Azure Functions key, an OAuth code) unless a number or itself.
    for text in [
        f"/api/f?code={secret}",
        f"/f?a=1&amp;code={secret}",
        f"/cb#code={secret}&state=1",
        f"code={secret}&grant_type=authorization_code",
    ]:
        assert secret not in str(decode_failure(encode_failure(ValueError(text)))), text
    kept = "raise CustomError(message, code=code); exit code=3; status code=404"
    assert str(decode_failure(encode_failure(ValueError(kept)))) == kept


def test_credential_names_are_told_by_their_words() -> None:
    from asjob.redaction import is_secret_name

    secret = ["client_secret", "api_keys", "apiKey", "AccountKey", "passcode", "mfa_code", "PAT"]
    plain = ["region_code", "exit_code", "design", "keyword", "status", "session", "name"]
    assert [n for n in secret if not is_secret_name(n)] == []
    assert [n for n in plain if is_secret_name(n)] == []
