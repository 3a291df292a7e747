"""Conformance against crates/warren-proto/tests/vectors.txt: every `vector` entry decodes and
encodes back to exactly its bytes; every `invalid` entry is rejected. Runs anywhere (no kernel):
the vectors file is found from PYWARREN_VECTORS or relative to this repository."""

import os
import pathlib

import pytest

from warren import protocol
from warren.errors import ProtocolError


def _vectors_path() -> pathlib.Path:
    env = os.environ.get("PYWARREN_VECTORS")
    if env:
        return pathlib.Path(env)
    return pathlib.Path(__file__).resolve().parents[3] / "crates/warren-proto/tests/vectors.txt"


def _entries():
    entries = []
    cur = None
    for line in _vectors_path().read_text().splitlines():
        if line[:1] not in (" ", "\t"):
            cur = None
            parts = line.split()
            if len(parts) == 3 and parts[0] in ("vector", "invalid"):
                cur = [parts[0] == "vector", parts[1], parts[2], bytearray()]
                entries.append(cur)
            continue
        if cur is not None:
            cur[3] += bytes.fromhex("".join(line.split("#", 1)[0].split()))
    return [pytest.param(v, d, bytes(b), id=n) for v, n, d, b in entries]


ENTRIES = _entries()


def test_the_vectors_cover_both_kinds_and_directions():
    kinds = {(p.values[0], p.values[1]) for p in ENTRIES}
    assert kinds == {(True, "request"), (True, "response"), (False, "request"), (False, "response")}
    assert len(ENTRIES) >= 70


@pytest.mark.parametrize("valid,direction,packet", ENTRIES)
def test_vector(valid, direction, packet):
    decode = protocol.decode_requests if direction == "request" else protocol.decode_responses
    encode = protocol.encode_request if direction == "request" else protocol.encode_response
    if not valid:
        with pytest.raises(ProtocolError):
            decode(packet)
        return
    frames = decode(packet)
    assert b"".join(encode(i, v) for i, v in frames) == packet


def test_the_decoder_names_where_a_packet_went_wrong():
    with pytest.raises(ProtocolError) as e:
        protocol.decode_responses(bytes.fromhex("0900000087010000000000" "0000"))
    assert "unknown error code 0" in str(e.value) and e.value.offset == 9


@pytest.mark.parametrize(
    "bodies",
    [[b""] * 5, [b"abcde"] * 300, [b"a", b"bb", b""], [b"x" * 8, b"y" * 8, b"z" * 7 + b"!"], [b"q"]],
)
def test_bodies_of_one_length_and_of_many_decode_alike(bodies):
    packet = protocol.encode_response(3, protocol.Deliveries(1, [protocol.Run("e", 0, bodies)]))
    [(_, d)] = protocol.decode_responses(packet)
    assert d.runs[0].bodies == bodies


def test_a_body_whose_length_breaks_the_pattern_is_still_checked():
    # Three bodies that fill the block exactly as three bodies of 4 bytes would, but whose
    # middle length prefix says 5: the block does not decode (the last body runs past it).
    block = b"".join([b"\x04\x00\x00\x00abcd", b"\x05\x00\x00\x00abcd", b"\x04\x00\x00\x00abcd"])
    fields = b"\x01\x00\x00\x00" + b"\x01\x00" + b"\x01e" + b"\x00" * 8 + b"\x03\x00\x00\x00" + len(block).to_bytes(4, "little") + block
    packet = (len(fields) + 5).to_bytes(4, "little") + b"\x88\x01\x00\x00\x00" + fields
    with pytest.raises(ProtocolError):
        protocol.decode_responses(packet)
