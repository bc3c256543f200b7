"""Refusal answers for IDK fine-tuning and IdkPO, written for viker.

Each forget sample gets one refusal, chosen deterministically from its id, so
the same run always pairs the same question with the same refusal.
"""

from __future__ import annotations

import hashlib

REFUSALS = (
    "I don't know who this person is.",
    "I'm not able to identify this person.",
    "I have no information about this person.",
    "I can't tell you anything about this person.",
    "I don't recognise this person.",
    "That is not something I know about this person.",
    "I'm not sure who this is.",
    "I have no record of this person.",
    "I cannot answer questions about this person.",
    "I don't have details about this person.",
    "I'm unable to say anything about this person.",
    "This is not a person I know about.",
    "I can't help with questions about this person.",
    "I do not know the answer to that.",
    "I'm afraid I don't know.",
    "I have nothing to share about this person.",
    "Sorry, I don't know anything about this person.",
    "I don't have that information.",
    "I can't say who this person is.",
    "I have no knowledge of this person.",
)


def refusal_for(sample_id: str, seed: int = 0) -> str:
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return REFUSALS[int.from_bytes(digest[:4], "big") % len(REFUSALS)]
