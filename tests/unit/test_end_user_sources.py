"""Where a request names its end user, route by route (`tollway.proxy.end_user`): bodies
with and without an end-user field, header-only requests, and the one end user of a batch."""

from __future__ import annotations

import pytest

from tests import factories as f
from tollway.errors import GatewayError
from tollway.governance.model import EndUserSource
from tollway.providers.apis import Api
from tollway.proxy.end_user import batch_end_user, end_user_in_body, end_user_in_header, end_user_of

OPEN = f.virtual_key("open")
REQUIRED = f.virtual_key("required", end_user=EndUserSource(required=True))
HEADER_ONLY = f.virtual_key("header-only", end_user=EndUserSource(body=False, required=True))
BODY_ONLY = f.virtual_key("body-only", end_user=EndUserSource(header=False, required=True))


@pytest.mark.parametrize(("api", "body", "named"), [
    (Api.IMAGES_GENERATIONS, {"user": "alice"}, "alice"),
    (Api.IMAGES_EDITS, {"user": " alice "}, "alice"),
    (Api.AUDIO_SPEECH, {"user": "alice"}, None),  # no such field in this API: not read
    (Api.MODERATIONS, {"user": "alice"}, None),
    (Api.GENERATE_CONTENT, {"user": "alice"}, None),
])
def test_the_body_names_an_end_user_only_where_its_api_has_the_field(api, body, named) -> None:
    assert end_user_of(api, body, None, OPEN) == named


def test_a_required_end_user_on_a_header_only_api_is_asked_of_the_header() -> None:
    with pytest.raises(GatewayError) as caught:
        end_user_of(Api.AUDIO_SPEECH, {}, None, REQUIRED)
    assert caught.value.param == "x-tollway-user" and "the x-tollway-user header" in caught.value.message
    assert end_user_of(Api.AUDIO_SPEECH, {}, b"bob", REQUIRED) == "bob"


def test_a_body_only_key_is_told_why_a_header_only_api_cannot_name_its_end_user() -> None:
    with pytest.raises(GatewayError) as caught:
        end_user_of(Api.MODERATIONS, {}, b"bob", BODY_ONLY)  # the header is not trusted
    assert "moderations requests have no end-user field" in caught.value.message


def test_header_only_requests_take_the_trusted_header_and_the_required_rule() -> None:
    assert end_user_in_header(b"carol", OPEN, "responses.get") == "carol"
    assert end_user_in_header(None, OPEN, "responses.get") is None
    with pytest.raises(GatewayError):
        end_user_in_header(None, HEADER_ONLY, "responses.get")
    with pytest.raises(GatewayError):
        end_user_in_header(b"", OPEN, "responses.get")  # named, but empty: a 400, not "no end user"


def test_a_batch_request_names_its_end_user_in_the_body_only_where_the_key_trusts_it() -> None:
    body = {"metadata": {"user_id": "dana"}}
    assert end_user_in_body(Api.MESSAGES, body, OPEN) == "dana"
    assert end_user_in_body(Api.MESSAGES, body, HEADER_ONLY) is None
    assert end_user_in_body(Api.MESSAGES, {}, REQUIRED) is None  # never required of one request


@pytest.mark.parametrize(("header", "in_requests", "limited", "expected"), [
    (None, {"erin"}, True, "erin"),
    (b"erin", {"erin"}, True, "erin"),
    (b"erin", set(), True, "erin"),
    (None, set(), True, None),
    (None, {"erin", "finn"}, False, None),  # no end-user limits: logged without one, not refused
])
def test_a_batch_has_one_end_user(header, in_requests, limited, expected) -> None:
    assert batch_end_user(header, in_requests, OPEN, limited, "metadata.user_id", "requests") == expected


@pytest.mark.parametrize(("header", "in_requests"), [(None, {"erin", "finn"}), (b"gus", {"erin"})])
def test_a_batch_naming_several_end_users_is_refused_where_their_limits_apply(header, in_requests) -> None:
    with pytest.raises(GatewayError) as caught:
        batch_end_user(header, in_requests, OPEN, True, "metadata.user_id", "requests")
    assert caught.value.param == "requests" and "one batch per end user" in caught.value.message


def test_a_batch_of_a_key_that_requires_an_end_user_must_name_one() -> None:
    with pytest.raises(GatewayError) as caught:
        batch_end_user(None, set(), REQUIRED, True, "metadata.user_id", "requests")
    assert "requires an end user" in caught.value.message
    with pytest.raises(GatewayError):
        batch_end_user(None, set(), BODY_ONLY, True, None, "input_file_id")
