"""The log's side of tlog-witness: submit a checkpoint with a consistency proof and keep verified cosignatures."""

from __future__ import annotations

import asyncio
import base64
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.audit.note import (
    COSIGNATURE_V1,
    NoteError,
    Signature,
    Verifier,
    parse_note,
    parse_signature_lines,
    verify_note,
)
from gateway.errors import GatewayError

ProofSource = Callable[[int, int], Awaitable[list[bytes]]]


class WitnessError(GatewayError):
    """A witness did not cosign: unreachable, refused the checkpoint, or answered with no valid cosignature."""


@dataclass(frozen=True, slots=True)
class WitnessConfig:
    """A witness the gateway submits checkpoints to: its submission URL prefix and cosigner verifier key."""

    url: str
    vkey: str

    def __post_init__(self) -> None:
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise WitnessError("a witness URL must start with http:// or https://")
        if self.verifier.sig_type != COSIGNATURE_V1:  # parsed now: a bad key is a configuration error
            raise WitnessError("a witness key is a cosignature key (signature type 0x04), as `witness key` prints")

    @property
    def verifier(self) -> Verifier:
        return Verifier.parse(self.vkey)


class WitnessClient:
    """Submits checkpoints to one witness, remembering the size it last cosigned (learnt from 409 answers)."""

    def __init__(self, config: WitnessConfig, *, timeout: float = 10.0) -> None:
        self.config = config
        self.verifier = config.verifier
        self._timeout = timeout
        self._old = 0

    def _post(self, body: bytes) -> tuple[int, bytes]:
        # The scheme was checked to be http(s) when the configuration was read.
        request = urllib.request.Request(self.config.url.rstrip("/") + "/add-checkpoint", data=body,  # noqa: S310
                                         method="POST", headers={"Content-Type": "text/plain"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise WitnessError(f"witness {self.verifier.name} is unreachable: {exc}") from exc

    async def add_checkpoint(self, note: str, tree_size: int, proof: ProofSource) -> Signature:
        """Get this witness's cosignature on the checkpoint `note` of `tree_size` entries.

        `proof(old, new)` gives the consistency proof from the witness's last cosigned size.
        """
        for _attempt in range(3):
            old = self._old if self._old <= tree_size else 0
            path = await proof(old, tree_size) if 0 < old < tree_size else []
            body = (f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in path) + "\n"
                    + note).encode()
            status, answer = await asyncio.to_thread(self._post, body)
            if status == 409:
                text = answer.decode("ascii", errors="replace").strip()
                if not text.isdigit() or int(text) > tree_size:
                    raise WitnessError(f"witness {self.verifier.name} has cosigned a larger tree than this log "
                                       "holds: the log may have been rolled back")
                self._old = int(text)
                continue
            if status != 200:
                raise WitnessError(f"witness {self.verifier.name} refused the checkpoint (HTTP {status})")
            return self._cosignature(note, answer)
        raise WitnessError(f"witness {self.verifier.name} kept changing its size")

    def _cosignature(self, note: str, answer: bytes) -> Signature:
        try:
            lines = parse_signature_lines(answer.decode())
            parsed = parse_note(note)
            mine = [s for s in lines if (s.name, s.key_id) == (self.verifier.name, self.verifier.key_id)]
            verify_note(type(parsed)(parsed.text, tuple(mine)), [self.verifier])
        except (NoteError, UnicodeDecodeError) as exc:
            raise WitnessError(f"witness {self.verifier.name} answered without a valid cosignature") from exc
        self._old = int(parsed.text.split(b"\n")[1])
        return mine[0]

