"""Checks a 64-bit Mach-O's ad-hoc code signature the way the kernel does
on Apple silicon, where an arm64 executable without a valid one is killed
at exec: LC_CODE_SIGNATURE points at a SuperBlob whose CodeDirectory holds
one hash per page of the file up to codeLimit; every hash must match.

    python3 adhoc_signature.py BINARY    (exit 0: valid; prints a summary)
"""

import hashlib
import struct
import sys

LC_CODE_SIGNATURE = 0x1D
SUPERBLOB = 0xFADE0CC0
CODEDIRECTORY = 0xFADE0C02

data = open(sys.argv[1], "rb").read()
ncmds = struct.unpack_from("<I", data, 16)[0]
at, sig = 32, None
for _ in range(ncmds):
    cmd, size = struct.unpack_from("<2I", data, at)
    if cmd == LC_CODE_SIGNATURE:
        sig = struct.unpack_from("<I", data, at + 8)[0]
    at += size
if sig is None:
    sys.exit("no LC_CODE_SIGNATURE: macOS on arm64 kills this binary at exec")
magic, _, count = struct.unpack_from(">3I", data, sig)
if magic != SUPERBLOB:
    sys.exit(f"the signature is not a SuperBlob ({magic:#x})")
checked = 0
for i in range(count):
    _, offset = struct.unpack_from(">2I", data, sig + 12 + 8 * i)
    cd = sig + offset
    fields = struct.unpack_from(">9I4B", data, cd)
    if fields[0] != CODEDIRECTORY:
        continue
    hash_offset, n_code, code_limit, hash_size, hash_type, page_log = (fields[4], fields[7], fields[8], fields[9], fields[10], fields[12])
    algo = {1: hashlib.sha1, 2: hashlib.sha256}[hash_type]
    page = 1 << page_log
    for slot in range(n_code):
        want = data[cd + hash_offset + slot * hash_size : cd + hash_offset + (slot + 1) * hash_size]
        got = algo(data[slot * page : min((slot + 1) * page, code_limit)]).digest()[:hash_size]
        if got != want:
            sys.exit(f"page {slot} does not match its hash: the binary changed after signing (strip?)")
    checked += 1
    print(f"CodeDirectory: {n_code} pages match, flags {fields[3]:#x}")
if not checked:
    sys.exit("no CodeDirectory in the signature")
