"""The bundle wire format, without I/O: what goes in comes out, and broken bundles say where."""

from __future__ import annotations

import pytest

from contracts import BundleMember, decode_bundle, encode_bundle
from contracts.errors import MalformedMessage, MessageTooLarge


def member(i: int, body: bytes | None = None) -> BundleMember:
    return BundleMember(
        body=body if body is not None else f'{{"n": {i}}}'.encode(),
        message_id=f"m{i}",
        type="SubmitTask",
        correlation_id=f"c{i}",
        headers={"traceparent": f"00-{i:032x}-{i:016x}-01", "x-rally-attempt": 1},
    )


def test_members_come_back_as_they_went_in() -> None:
    members = [member(i) for i in range(5)]
    assert decode_bundle(encode_bundle(members)) == members


def test_a_body_may_hold_any_bytes_newlines_included() -> None:
    odd = [member(0, b"line\nbreak\n"), member(1, b""), member(2, b"\x00\xff\n\n{")]
    assert decode_bundle(encode_bundle(odd)) == odd


def test_absent_properties_stay_absent() -> None:
    bare = [BundleMember(body=b"{}"), BundleMember(body=b"[]", message_id="x")]
    assert decode_bundle(encode_bundle(bare)) == bare


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "no members"),
        (b"not json\n{}\n", "member 0: properties are not JSON"),
        (b"[1]\n{}\n", "member 0: properties are not a JSON object"),
        (b'{"id": "a"}\n{}\n', "member 0: no body length"),
        (b'{"n": -1}\n\n', "member 0: no body length"),
        (b'{"n": 10}\n{}\n', "member 0: body of 10 bytes"),
        (b'{"n": 2}\n{}', "member 0: body of 2 bytes"),
        (b'{"n": 2}\n{}x', "member 0: body of 2 bytes"),
        (b'{"n": 2, "h": []}\n{}\n', "member 0: headers 'h' are not an object"),
        (b'{"n": 2}\n{}\n{"n": 2}', "member 1: no line of properties"),
    ],
)
def test_a_broken_bundle_says_where(raw: bytes, says: str) -> None:
    with pytest.raises(MalformedMessage, match=says):
        decode_bundle(raw)


def test_member_count_and_size_are_bounded() -> None:
    raw = encode_bundle([member(i) for i in range(4)])
    with pytest.raises(MessageTooLarge):
        decode_bundle(raw, max_members=3)
    with pytest.raises(MessageTooLarge, match="bundle is"):
        decode_bundle(raw, max_bytes=len(raw) - 1)
    assert len(decode_bundle(raw, max_bytes=len(raw))) == 4
