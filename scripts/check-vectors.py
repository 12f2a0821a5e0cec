#!/usr/bin/python3
"""Re-derives the golden vectors of the compute wire protocol independently.

Reads proto/tests/golden_vectors.json (or the file named as the first
argument) and recomputes every positive vector from its inputs with nothing
but PyNaCl (ed25519) and the standard library (hashlib's sha3_256 and
sha256, json, base64, struct): public keys from seeds, H(tag, parts), job
ids, commitments, assignment seeds, result hashes, protobuf encodings (by
hand, from the field numbers of proto/proto/compute/v1/tx.proto and
gateway.proto), ed25519 signatures (deterministic, so byte for byte),
transactions and their CometBFT hashes, and signed blob upload headers with
the first PutBlob chunk that carries each.

For the negative vectors it shows that each refused transaction is
correctly signed yet differs from the canonical encoding built here, and it
re-derives every public-key verdict (not on the curve, non-canonical, small
order) with its own edwards25519 arithmetic, following the decompression of
curve25519-dalek that the chain uses.

Needs PyNaCl: `apt-get install python3-nacl` (Debian; then run it with the
system /usr/bin/python3) or `pip install pynacl`. Exits 1 on any mismatch.
See docs/PROTOCOL.md.
"""

import base64
import hashlib
import json
import os
import struct
import sys

try:
    import nacl.exceptions
    import nacl.signing
except ImportError:
    sys.exit(
        "check-vectors: PyNaCl is missing: install it with `apt-get install python3-nacl` "
        "(and run this script with /usr/bin/python3) or `pip install pynacl`"
    )

# --------------------------------------------------------------------------
# Hashing: H(tag, parts...) = sha3_256(tag || 0x00 || part1 || part2 ...).


def sha3(data):
    return hashlib.sha3_256(data).digest()


def H(tag, *parts):
    return sha3(tag.encode() + b"\x00" + b"".join(parts))


def u32(n):
    return struct.pack(">I", n)


def u64(n):
    return struct.pack(">Q", n)


# --------------------------------------------------------------------------
# Protobuf, canonical form: fields in number order, scalars equal to their
# default (0, "", empty bytes) left out, oneof members and present messages
# always written, shortest varints.

SCHEMA = {
    "Tx": [(1, "body", "bytes"), (2, "signer", "bytes"), (3, "signature", "bytes")],
    "TxBody": [
        (1, "chain_id", "string"),
        (2, "nonce", "uint64"),
        (3, "fee", "uint64"),
        (10, "transfer", "Transfer", "oneof"),
        (11, "store_module", "StoreModule", "oneof"),
        (12, "register_worker", "RegisterWorker", "oneof"),
        (13, "unregister_worker", "UnregisterWorker", "oneof"),
        (14, "post_job", "PostJob", "oneof"),
        (15, "commit_result", "CommitResult", "oneof"),
        (16, "reveal_result", "RevealResult", "oneof"),
        (17, "cancel_job", "CancelJob", "oneof"),
        (18, "dispute", "Dispute", "oneof"),
        (19, "decline_task", "DeclineTask", "oneof"),
        (20, "bond_validator", "BondValidator", "oneof"),
        (21, "unbond_validator", "UnbondValidator", "oneof"),
        (22, "unjail_validator", "UnjailValidator", "oneof"),
        (23, "commit_results", "CommitResults", "oneof"),
        (24, "reveal_results", "RevealResults", "oneof"),
        (25, "post_jobs", "PostJobs", "oneof"),
    ],
    "Transfer": [(1, "to", "bytes"), (2, "amount", "uint64")],
    "StoreModule": [(1, "wasm", "bytes")],
    "RegisterWorker": [(1, "capacity", "uint32"), (2, "stake", "uint64")],
    "UnregisterWorker": [],
    "TaskInput": [
        (1, "inline", "bytes", "oneof"),
        (2, "hash", "bytes", "oneof"),
        (3, "size", "uint64"),
    ],
    "QuorumPolicy": [
        (1, "replicas", "uint32"),
        (2, "quorum", "uint32"),
        (3, "max_replicas", "uint32"),
    ],
    "VerifiedPolicy": [(1, "verify_fuel", "uint64"), (2, "max_workers", "uint32")],
    "Policy": [
        (1, "quorum", "QuorumPolicy", "oneof"),
        (2, "verified", "VerifiedPolicy", "oneof"),
    ],
    "PostJob": [
        (1, "module_id", "bytes"),
        (2, "tasks", "TaskInput", "repeated"),
        (3, "policy", "Policy", "message"),
        (4, "fuel_limit", "uint64"),
        (5, "price_per_mfuel", "uint64"),
        (6, "deadline_blocks", "uint64"),
        (7, "min_reputation_ppm", "uint32"),
        (8, "max_tasks_per_worker", "uint32"),
    ],
    "CommitResult": [(1, "job_id", "bytes"), (2, "task", "uint32"), (3, "commitment", "bytes")],
    "RevealResult": [
        (1, "job_id", "bytes"),
        (2, "task", "uint32"),
        (3, "result_hash", "bytes"),
        (4, "fuel_used", "uint64"),
        (5, "salt", "bytes"),
        (6, "output", "bytes"),
    ],
    "CancelJob": [(1, "job_id", "bytes")],
    "Dispute": [(1, "job_id", "bytes"), (2, "task", "uint32"), (3, "input", "bytes"), (4, "bond", "uint64")],
    "DeclineTask": [(1, "job_id", "bytes"), (2, "task", "uint32"), (3, "reason", "string")],
    "BondValidator": [(1, "pub_key", "bytes"), (2, "stake", "uint64")],
    "UnbondValidator": [(1, "amount", "uint64")],
    "UnjailValidator": [],
    "CommitResults": [(1, "entries", "CommitResult", "repeated")],
    "RevealResults": [(1, "entries", "RevealResult", "repeated")],
    "PostJobs": [(1, "jobs", "PostJob", "repeated")],
    # gateway.proto: the signed header of a PutBlob, on its first chunk.
    "UploadHeader": [
        (1, "uploader", "bytes"),
        (2, "hash", "bytes"),
        (3, "size", "uint64"),
        (4, "expires", "uint64"),
        (5, "signature", "bytes"),
    ],
    "BlobChunk": [(1, "hash", "bytes"), (2, "data", "bytes"), (3, "upload", "UploadHeader", "message")],
}
BITS = {"uint32": 32, "uint64": 64}


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n == 0:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def encode(message, value):
    """The canonical encoding of `value` (a dict with proto field names)."""
    out = b""
    for number, name, kind, *mode in SCHEMA[message]:
        mode = mode[0] if mode else "singular"
        field = value.get(name)
        if field is None:
            continue
        for item in field if mode == "repeated" else [field]:
            if kind in BITS:
                if not 0 <= item < 1 << BITS[kind]:
                    raise ValueError(f"{message}.{name} = {item} is out of range for {kind}")
                if mode == "singular" and item == 0:
                    continue
                out += varint(number << 3) + varint(item)
                continue
            if kind == "bytes":
                data = bytes.fromhex(item)
            elif kind == "string":
                data = item.encode("utf-8")
            else:
                data = encode(kind, item)
            if mode == "singular" and not data:
                continue
            out += varint(number << 3 | 2) + varint(len(data)) + data
    return out


def envelope(body, signer, signature):
    return encode("Tx", {"body": body.hex(), "signer": signer.hex(), "signature": signature.hex()})


def top_level_fields(data):
    """(number, wire type) of each field, for the malformed-body vectors."""
    fields, at = [], 0

    def read_varint():
        nonlocal at
        shift = value = 0
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while at < len(data):
        key = read_varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            read_varint()
        elif wire == 2:
            length = read_varint()
            at += length
        else:
            raise ValueError(f"wire type {wire}")
        fields.append((number, wire))
    return fields


# --------------------------------------------------------------------------
# ed25519 through PyNaCl (RFC 8032 signing is deterministic).


def public_key(seed):
    return bytes(nacl.signing.SigningKey(seed).verify_key)


def sign(seed, message):
    return nacl.signing.SigningKey(seed).sign(message).signature


def verifies(public, message, signature):
    try:
        nacl.signing.VerifyKey(public).verify(message, signature)
        return True
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False


# --------------------------------------------------------------------------
# edwards25519, as curve25519-dalek decompresses: y is read as 255 bits and
# reduced modulo p, x is the root whose parity the sign bit names (a sign
# bit on x = 0 is ignored). The chain's check_public_key then refuses bytes
# that do not re-encode to themselves, and points whose multiple by 8 is
# the identity.

P = 2**255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def decompress(raw):
    y = (int.from_bytes(raw, "little") & ((1 << 255) - 1)) % P
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * SQRT_M1 % P
    if v * x * x % P != u:
        return None
    if x & 1:
        x = P - x
    if raw[31] >> 7:
        x = (P - x) % P
    return x, y


def compress(point):
    x, y = point
    return (y | (x & 1) << 255).to_bytes(32, "little")


def add(a, b):
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return (
        (x1 * y2 + y1 * x2) * pow(1 + t, P - 2, P) % P,
        (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P,
    )


def key_verdict(raw):
    point = decompress(raw)
    if point is None:
        return "NotOnCurve"
    if compress(point) != raw:
        return "NonCanonical"
    for _ in range(3):
        point = add(point, point)
    return "SmallOrder" if point == (0, 1) else "Ok"


# --------------------------------------------------------------------------


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def vector(self, where, checks):
        """Counts one vector; `checks` is a list of (what, expected, got)."""
        bad = [(what, e, g) for what, e, g in checks if e != g]
        for what, expected, got in bad:
            self.failures.append(f"{where}: {what}: expected {show(expected)}, computed {show(got)}")
        if bad:
            self.failed += 1
        else:
            self.passed += 1


def show(value):
    return value.hex() if isinstance(value, bytes) else repr(value)


def unhex(text):
    return bytes.fromhex(text)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "proto", "tests", "golden_vectors.json")
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)
    c = Checker()
    seeds = {}

    for k in vectors["keys"]:
        seed = unhex(k["seed"])
        seeds[k["name"]] = seed
        c.vector(f"keys[{k['name']}]", [
            ("public key from the seed", unhex(k["public_key"]), public_key(seed)),
            ("key file account", k["public_key"], k["key_file"]["account"]),
            ("key file secret_key", k["seed"], k["key_file"]["secret_key"]),
            ("key file fields", ["account", "secret_key"], sorted(k["key_file"])),
        ])

    for i, h in enumerate(vectors["hashes"]):
        parts = [unhex(p) for p in h["parts"]]
        preimage = h["tag"].encode() + b"\x00" + b"".join(parts)
        c.vector(f"hashes[{i}] {h['tag']}", [
            ("tag is known", True, h["tag"] in vectors["tags"]),
            ("preimage", unhex(h["preimage"]), preimage),
            ("digest", unhex(h["digest"]), H(h["tag"], *parts)),
        ])

    for i, j in enumerate(vectors["ids"]["job_ids"]):
        requester = unhex(j["requester"])
        c.vector(f"job_ids[{i}]", [
            ("nonce u64 BE", unhex(j["nonce_be"]), u64(j["nonce"])),
            ("job id", unhex(j["job_id"]), H("compute/job/v1", requester, u64(j["nonce"]))),
        ])
    for i, b in enumerate(vectors["ids"]["content_ids"]):
        c.vector(f"content_ids[{i}]", [("sha3_256", unhex(b["id"]), sha3(unhex(b["bytes"])))])

    for i, m in enumerate(vectors["commitments"]):
        parts = [
            unhex(m["job"]), u32(m["task"]), unhex(m["worker"]),
            unhex(m["result_hash"]), u64(m["fuel_used"]), unhex(m["salt"]),
        ]
        c.vector(f"commitments[{i}]", [
            ("preimage", unhex(m["preimage"]), b"compute/commit/v1\x00" + b"".join(parts)),
            ("commitment", unhex(m["commitment"]), H("compute/commit/v1", *parts)),
        ])

    for i, s in enumerate(vectors["assignment_seeds"]):
        seed = H("compute/assign/v1", unhex(s["block_hash"]), unhex(s["job"]),
                 u32(s["task"]), u32(s["slot"]), u32(s["attempt"]))
        c.vector(f"assignment_seeds[{i}]", [("seed", unhex(s["seed"]), seed)])

    for i, o in enumerate(vectors["result_hashes"]["outputs"]):
        c.vector(f"result_hashes.outputs[{i}]", [("sha3_256(output)", unhex(o["result_hash"]), sha3(unhex(o["output"])))])
    for f in vectors["result_hashes"]["failures"]:
        c.vector(f"result_hashes.failures[{f['failure']}]", [
            ("code u32 BE", unhex(f["code_be"]), u32(f["code"])),
            ("H(failure, code)", unhex(f["result_hash"]), H("compute/failure/v1", u32(f["code"]))),
        ])

    for t in vectors["transactions"]:
        seed = seeds[t["signer"]]
        signer = public_key(seed)
        body = encode("TxBody", t["body"])
        digest = H("compute/tx/v1", body)
        signature = sign(seed, digest)
        tx = envelope(body, signer, signature)
        checks = [
            ("chain id", vectors["chain_id"], t["body"]["chain_id"]),
            ("signer", unhex(t["signer_public_key"]), signer),
            ("TxBody bytes", unhex(t["body_hex"]), body),
            ("sign bytes H(tx, body)", unhex(t["sign_bytes"]), digest),
            ("signature", unhex(t["signature"]), signature),
            ("signature verifies", True, verifies(signer, digest, signature)),
            ("Tx bytes", unhex(t["tx_hex"]), tx),
            ("Tx base64", t["tx_base64"], base64.b64encode(tx).decode()),
            ("CometBFT tx hash", t["tx_hash"], hashlib.sha256(tx).hexdigest().upper()),
        ]
        if "job_id" in t:
            checks.append(("job id", unhex(t["job_id"]), H("compute/job/v1", signer, u64(t["body"]["nonce"]))))
        for i, job in enumerate(t.get("job_ids", [])):
            checks.append((f"job id of jobs[{i}]", unhex(job),
                           H("compute/job/v1", signer, u64(t["body"]["nonce"]), u32(i))))
        c.vector(f"transactions[{t['name']}]", checks)

    for n in vectors["non_canonical"]:
        seed = seeds[n["signer"]]
        signer = public_key(seed)
        canonical = encode("TxBody", n["decodes_to"])
        given_body = unhex(n["body_hex"])
        checks = [
            ("expected code", 31, n["expected"]["code"]),
            ("canonical body", unhex(n["canonical_body_hex"]), canonical),
        ]
        if n["part"] == "TxBody":
            # Correctly signed over the bytes given: only the encoding is wrong.
            signed = envelope(given_body, signer, sign(seed, H("compute/tx/v1", given_body)))
            checks += [
                ("the body differs from its canonical encoding", True, given_body != canonical),
                ("Tx bytes, signed over the given body", unhex(n["tx_hex"]), signed),
            ]
        else:
            good = envelope(canonical, signer, sign(seed, H("compute/tx/v1", canonical)))
            checks += [
                ("the body is canonical", canonical, given_body),
                ("canonical Tx", unhex(n["canonical_tx_hex"]), good),
                ("the Tx differs from its canonical encoding", True, unhex(n["tx_hex"]) != good),
            ]
        c.vector(f"non_canonical[{n['name']}]", checks)

    for i, k in enumerate(vectors["public_keys"]["vectors"]):
        c.vector(f"public_keys[{i}] {k['what']}", [("verdict", k["verdict"], key_verdict(unhex(k["public_key"])))])

    for r in vectors["rejections"]:
        body, signer, signature = unhex(r["body_hex"]), unhex(r["signer_public_key"]), unhex(r["signature"])
        error = r["expected"]["error"]
        checks = [("Tx bytes", unhex(r["tx_hex"]), envelope(body, signer, signature))]
        if "signed_message" in r:
            checks.append(("signature over signed_message", signature, sign(seeds[r["signer"]], unhex(r["signed_message"]))))
        if error == "SignerInvalid":
            checks.append(("signer verdict", r["expected"]["reason"], key_verdict(signer)))
        elif error == "BadSignature":
            checks += [
                ("canonical signer", "Ok", key_verdict(signer)),
                ("signature over H(tx, body) fails", False, verifies(signer, H("compute/tx/v1", body), signature)),
            ]
        elif error == "SignerLength":
            checks.append(("signer is not 32 bytes", True, len(signer) != 32))
        elif error == "SignatureLength":
            checks.append(("signature is not 64 bytes", True, len(signature) != 64))
        elif error == "MissingMessage":
            checks.append(("no field of the msg oneof", [], [n for n, _ in top_level_fields(body) if n >= 10]))
        elif error == "BodyMalformed":
            declared = {number: kind for number, _, kind, *_ in SCHEMA["TxBody"]}
            mismatched = [n for n, wire in top_level_fields(body) if n in declared and wire != (0 if declared[n] in BITS else 2)]
            checks.append(("a field with the wrong wire type", True, bool(mismatched)))
        else:
            checks.append(("a known error", "known", error))
        c.vector(f"rejections[{r['name']}]", checks)

    for v in vectors["uploads"]["vectors"]:
        seed = seeds[v["uploader"]]
        uploader = public_key(seed)
        blob = unhex(v["blob"])
        header = v["header"]
        size, expires = header["size"], header["expires"]
        parts = [uploader, sha3(blob), u64(size), u64(expires)]
        digest = H("compute/upload/v1", *parts)
        signature = sign(seed, digest)
        built = {
            "uploader": uploader.hex(),
            "hash": sha3(blob).hex(),
            "size": size,
            "expires": expires,
            "signature": signature.hex(),
        }
        chunk = v["first_chunk"]
        data = unhex(chunk["data"])
        checks = [
            ("uploader", unhex(header["uploader"]), uploader),
            ("hash = sha3_256(blob)", unhex(header["hash"]), sha3(blob)),
            ("size = the blob's length", len(blob), size),
            ("size u64 BE", unhex(v["size_be"]), u64(size)),
            ("expires u64 BE", unhex(v["expires_be"]), u64(expires)),
            ("preimage", unhex(v["preimage"]), b"compute/upload/v1\x00" + b"".join(parts)),
            ("digest", unhex(v["digest"]), digest),
            ("signature", unhex(header["signature"]), signature),
            ("signature verifies", True, verifies(uploader, digest, signature)),
            ("a changed size breaks it", False, verifies(uploader, H("compute/upload/v1", *parts[:2], u64(size ^ 1), u64(expires)), signature)),
            ("UploadHeader bytes", unhex(v["upload_header_hex"]), encode("UploadHeader", built)),
            ("the first chunk's data starts the blob", data, blob[: len(data)]),
            ("the first chunk's hash, when named, is the header's", True, chunk["hash"] in ("", built["hash"])),
            ("first BlobChunk bytes", unhex(v["first_chunk_hex"]), encode("BlobChunk", {"hash": chunk["hash"], "data": chunk["data"], "upload": built})),
        ]
        c.vector(f"uploads[{v['name']}]", checks)

    for failure in c.failures:
        print(f"MISMATCH {failure}", file=sys.stderr)
    print(f"golden vectors: {c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
