"""Hostile sign-up and manage bodies are a 4xx, never a 500, and send nothing (regression cases)."""

from __future__ import annotations

import pytest

from tests.signup.conftest import Signup

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("path", ["/subscribe", "/manage"])
@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (bytes(range(256)) * 8, FORM, 400),  # binary
        (b"email=" + b"a" * (1024 * 1024), FORM, 413),  # a 1 MB field
        (b"email=a%00@example.org", FORM, 400),  # NUL
        (b"email=a\x00@example.org", FORM, 400),
        (b"&".join(b"a" + b"[x]" * 500 + b"=1" for _ in range(10)), FORM, 400),  # nested keys
        (b"email[a][b][c]=x@example.org", FORM, 400),
        (b"&".join(b"topics=press" for _ in range(200)), FORM, 400),  # too many fields
        (b"email=%ff%fe@example.org", FORM, 400),  # not UTF-8 once decoded
        (b"email=caf\xc3\xa9@example.org", FORM, 400),  # raw non-ASCII
        (b'{"email": "a@example.org"}', {"content-type": "application/json"}, 415),
        (b"--x\r\nContent-Disposition: form-data; name=email\r\n\r\na@b.org\r\n--x--",
         {"content-type": "multipart/form-data; boundary=x"}, 415),
        (b"email=a@example.org&email=b@example.org", FORM, 400),
    ],
)
def test_hostile_bodies(signup: Signup, path: str, body: bytes, headers: dict[str, str], status: int) -> None:
    answer = signup.client.post(path, content=body, headers=headers)
    assert answer.status_code == status, answer.text[:300]
    assert signup.messages() == []


def test_lying_content_length(signup: Signup) -> None:
    headers = {**FORM, "content-length": "99999999"}
    answer = signup.client.post("/subscribe", content=b"email=a", headers=headers)
    assert answer.status_code == 413
