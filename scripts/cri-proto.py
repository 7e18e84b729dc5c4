#!/usr/bin/env python3
"""Makes husk's copy of the CRI proto from an upstream cri-api api.proto.

Usage: scripts/cri-proto.py UPSTREAM_API_PROTO VERSION > crates/api/proto/runtime/v1/api.proto

Keeps the wire contract (package, services, messages, enums, field names, numbers and types)
and drops everything else: upstream's comments and layout, and the `debug_redact` field option
(wire-neutral, and unknown to Debian 12's protoc 3.21). ARCHITECTURE.md ("The CRI bindings")
says how to move to the next cri-api version with it.
"""
import re
import sys

src = open(sys.argv[1]).read()
version = sys.argv[2]
src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
src = re.sub(r"//[^\n]*", "", src)
src = re.sub(r"\s*\[\s*debug_redact\s*=\s*true\s*\]", "", src)
out, depth, cur = [], 0, ""
for t in re.findall(r"[{};]|[^{};]+", src):
    line = " ".join(cur.split())
    if t == "{":
        if line.startswith("rpc "):
            cur = line + " {"
            continue
        out.append("    " * depth + line + " {")
        depth, cur = depth + 1, ""
    elif t == "}":
        if cur.startswith("rpc ") and cur.endswith("{"):
            out.append("    " * depth + cur + "}")
            cur = ""
            continue
        if line:
            out.append("    " * depth + line)
        depth -= 1
        out.append("    " * depth + "}")
        if depth == 0:
            out.append("")
        cur = ""
    elif t == ";":
        if line:
            out.append("    " * depth + line + ";")
        cur = ""
    else:
        cur += t
body = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n"
body = body.replace('syntax = "proto3";\npackage', 'syntax = "proto3";\n\npackage')
body = body.replace('option go_package = "k8s.io/cri-api/pkg/apis/runtime/v1";\n',
                    'option go_package = "k8s.io/cri-api/pkg/apis/runtime/v1";\n\n')
sys.stdout.write(
    f"""// husk's copy of the CRI wire contract: package runtime.v1 as published in cri-api {version}.
// Package, services, messages, field names and numbers are the contract and must match upstream
// exactly; comments and layout are ours (made by scripts/cri-proto.py; upstream's `debug_redact`
// options are left out: they do not change the wire). How to move to the next cri-api version:
// ARCHITECTURE.md, "The CRI bindings". Generated into husk_api::runtime::v1.
"""
    + body
)
