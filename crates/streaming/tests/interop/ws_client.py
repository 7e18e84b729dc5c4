"""Interop client: drives husk's streaming server with the `websockets` package.

Usage: ws_client.py MODE URL [ARG]; prints one JSON document describing what it saw.
"""
import base64
import json
import sys

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def drain(ws, text=False):
    channels = {}
    first = None
    for msg in ws:
        if text:
            ch, data = int(msg[0]), base64.b64decode(msg[1:])
        else:
            ch, data = msg[0], msg[1:]
        if first is None:
            first = [ch, len(data)]
        channels.setdefault(ch, b"")
        channels[ch] += data
    code = ws.close_code if hasattr(ws, "close_code") else ws.protocol.close_rcvd.code
    return {
        "first": first,
        "channels": {str(k): v.decode("latin-1") for k, v in channels.items()},
        "close_code": code,
        "protocol": ws.subprotocol,
    }


def main():
    mode, url = sys.argv[1], sys.argv[2].replace("http://", "ws://", 1)
    if mode == "exec-v5-echo":
        with connect(url, subprotocols=["v5.channel.k8s.io", "v4.channel.k8s.io"]) as ws:
            ws.send(b"\x00hello from python")
            ws.send(b"\x04" + json.dumps({"Width": 120, "Height": 40}).encode())
            ws.send(b"\xff\x00")
            out = drain(ws)
    elif mode == "exec-v4-base64":
        with connect(url, subprotocols=["v4.base64.channel.k8s.io"]) as ws:
            out = drain(ws, text=True)
    elif mode == "portforward":
        with connect(url, subprotocols=["v4.channel.k8s.io"]) as ws:
            seen = {}
            got = b""
            ws.send(b"\x00" + sys.argv[3].encode())
            while len(got) < len(sys.argv[3]):
                msg = ws.recv(timeout=10)
                if msg[0] not in seen:
                    seen[msg[0]] = int.from_bytes(msg[1:3], "little")
                    continue
                if msg[0] == 0:
                    got += msg[1:]
            ws.close()
            out = {"ports": {str(k): v for k, v in seen.items()}, "data": got.decode()}
    elif mode == "bad-frame":
        # A text frame that is not UTF-8: the server must close with 1007.
        with connect(url, subprotocols=["v5.channel.k8s.io"]) as ws:
            ws.send(b"\x00\xff\xfe", text=True)
            try:
                while True:
                    ws.recv(timeout=10)
            except ConnectionClosed as e:
                out = {"close_code": e.rcvd.code if e.rcvd else None}
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
