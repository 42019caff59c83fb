#!/usr/bin/env python3
"""An example command transform for anonymize (see the README, "Your own transform").

Reads one JSON line per value, {"value": "...", "seed": "<64 hex digits>"}, and answers one
line {"value": "..."}, flushed, in the same order. Each letter and digit is replaced by one
drawn from the seed, so the value keeps its shape (AB-1234-x -> QF-8301-m) and the same value
always gets the same token; the seed comes from anonymize's secret key, the rule's domain and
the value, so this script never sees the key.
"""
import hashlib
import json
import sys

DIGITS = "0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER = UPPER.lower()


def tokenize(value: str, seed: bytes) -> str:
    stream = hashlib.shake_256(seed).digest(len(value))
    out = []
    for ch, byte in zip(value, stream):
        for alphabet in (DIGITS, UPPER, LOWER):
            if ch in alphabet:
                ch = alphabet[byte % len(alphabet)]
                break
        out.append(ch)
    return "".join(out)


for line in sys.stdin:
    request = json.loads(line)
    answer = tokenize(request["value"], bytes.fromhex(request["seed"]))
    print(json.dumps({"value": answer}), flush=True)
