"""RFC 9497 OPRF(ristretto255, SHA-512), base mode (0x00), over libsodium's ristretto255 primitives.

The group operations come from `rbcl` (libsodium, installed with the `oprf` package); hashing to the group
and to scalars, key derivation, blinding, evaluation and finalisation follow RFC 9497 section 3 and
RFC 9380 (expand_message_xmd with SHA-512; hash_to_ristretto255). Scalars are 32 bytes little-endian,
elements 32-byte ristretto255 encodings. The RFC's Appendix A.1.1 vectors are checked by the tests.
"""

from __future__ import annotations

import hashlib

import rbcl

MODE_OPRF = 0x00
IDENTIFIER = b"ristretto255-SHA512"
CONTEXT = b"OPRFV1-" + bytes([MODE_OPRF]) + b"-" + IDENTIFIER
HASH_TO_GROUP_DST = b"HashToGroup-" + CONTEXT
HASH_TO_SCALAR_DST = b"HashToScalar-" + CONTEXT
DERIVE_KEY_PAIR_DST = b"DeriveKeyPair" + CONTEXT
ELEMENT_BYTES = 32
SCALAR_BYTES = 32
OUTPUT_BYTES = 64
MAX_INPUT_BYTES = 0xFFFF  # inputs are length-prefixed with two bytes
_IDENTITY = bytes(ELEMENT_BYTES)


class OprfError(ValueError):
    """An input, element or scalar the protocol must refuse (never echoes the value)."""


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512 (b_in_bytes 64, s_in_bytes 128)."""
    if len(dst) > 255:
        raise OprfError("domain separation tag is longer than 255 bytes")
    ell = -(-length // 64)
    if ell > 255 or length > 0xFFFF:
        raise OprfError("requested output is too long")
    dst_prime = dst + _i2osp(len(dst), 1)
    b0 = hashlib.sha512(bytes(128) + msg + _i2osp(length, 2) + b"\x00" + dst_prime).digest()
    blocks = [hashlib.sha512(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, blocks[-1], strict=True))
        blocks.append(hashlib.sha512(mixed + _i2osp(i, 1) + dst_prime).digest())
    return b"".join(blocks)[:length]


def hash_to_group(data: bytes) -> bytes:
    """hash_to_ristretto255(data) with the suite's HashToGroup DST (RFC 9380 appendix B)."""
    return bytes(rbcl.crypto_core_ristretto255_from_hash(expand_message_xmd(data, HASH_TO_GROUP_DST, 64)))


def hash_to_scalar(data: bytes, dst: bytes = HASH_TO_SCALAR_DST) -> bytes:
    """64 uniform bytes reduced modulo the group order (little-endian)."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_reduce(expand_message_xmd(data, dst, 64)))


def derive_key_pair(seed: bytes, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9497 section 3.2.1 DeriveKeyPair: (secret scalar, public element) from a 32-byte seed."""
    if len(seed) != 32:
        raise OprfError("the key seed must be 32 bytes")
    derive_input = seed + _i2osp(len(info), 2) + info
    for counter in range(256):
        sk = hash_to_scalar(derive_input + _i2osp(counter, 1), DERIVE_KEY_PAIR_DST)
        if sk != bytes(SCALAR_BYTES):
            return sk, bytes(rbcl.crypto_scalarmult_ristretto255_base(sk))
    raise OprfError("key derivation failed")  # pragma: no cover - probability 2^-2000


def random_scalar() -> bytes:
    """A uniformly random non-zero scalar (for blinding)."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_random())


def _check_input(data: bytes) -> None:
    if len(data) > MAX_INPUT_BYTES:
        raise OprfError("input is longer than 65535 bytes")


def _check_element(element: bytes) -> None:
    if len(element) != ELEMENT_BYTES or element == _IDENTITY or not rbcl.crypto_core_ristretto255_is_valid_point(
            element):
        raise OprfError("not a valid non-identity ristretto255 element")


def _check_scalar(scalar: bytes) -> None:
    # A canonical scalar is below the group order: reducing it (zero-padded to 64 bytes) leaves it unchanged.
    if len(scalar) != SCALAR_BYTES or scalar == bytes(SCALAR_BYTES) or bytes(
            rbcl.crypto_core_ristretto255_scalar_reduce(scalar + bytes(32))) != scalar:
        raise OprfError("not a canonical non-zero scalar")


def _mult(scalar: bytes, element: bytes) -> bytes:
    try:
        return bytes(rbcl.crypto_scalarmult_ristretto255(scalar, element))
    except RuntimeError as exc:  # the product is the identity
        raise OprfError("the product is the identity element") from exc


def blind(data: bytes, blind_scalar: bytes | None = None) -> tuple[bytes, bytes]:
    """Client Blind: (blind scalar, blinded element). A fixed `blind_scalar` is for test vectors only."""
    _check_input(data)
    r = random_scalar() if blind_scalar is None else blind_scalar
    _check_scalar(r)
    element = hash_to_group(data)
    if element == _IDENTITY:
        raise OprfError("the input hashes to the identity element")  # pragma: no cover - negligible
    return r, _mult(r, element)


def blind_evaluate(secret: bytes, blinded_element: bytes) -> bytes:
    """Server BlindEvaluate: the evaluated element for one blinded element; OprfError if it is not valid."""
    _check_element(blinded_element)
    return _mult(secret, blinded_element)


def _finalize_hash(data: bytes, element: bytes) -> bytes:
    return hashlib.sha512(_i2osp(len(data), 2) + data + _i2osp(len(element), 2) + element + b"Finalize").digest()


def finalize(data: bytes, blind_scalar: bytes, evaluated_element: bytes) -> bytes:
    """Client Finalize: the 64-byte PRF output for `data`."""
    _check_input(data)
    _check_element(evaluated_element)
    inverse = bytes(rbcl.crypto_core_ristretto255_scalar_invert(blind_scalar))
    return _finalize_hash(data, _mult(inverse, evaluated_element))


def evaluate(secret: bytes, data: bytes) -> bytes:
    """Server Evaluate (RFC 9497 section 3.3.1): the same 64-byte output without a client, for the key holder."""
    _check_input(data)
    element = hash_to_group(data)
    return _finalize_hash(data, _mult(secret, element))

