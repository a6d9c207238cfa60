#!/usr/bin/env python3
"""A stand-in for every vendor, for the schemathesis run (.ci/schemathesis.sh).

Serves each upstream under its own path prefix (/loop, /partnero, /spacebring, /moltin, /limio-v2,
/limio-v3): an OAuth2 token endpoint at <prefix>/oauth2/token and, for any other POST, the vendor's
documented success answer echoing the code it was sent; for the calls after create
(shared/vendor-docs/lifecycle/: reads, archives, deactivations and deletes) the documented success
answer too, so that the stateful phase that follows a create to its live read and its revoke
meets a vendor that answers. Prints "listening on HOST:PORT".
"""
import itertools
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IDS = itertools.count(1)


def find(value, key):
    """The first string under `key` anywhere in a JSON value."""
    if isinstance(value, dict):
        if isinstance(value.get(key), str):
            return value[key]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = find(item, key)
            if found is not None:
                return found
    return None


def answer(vendor, body):
    n = next(IDS)
    code = find(body, "code") or "CODE"
    if vendor == "loop":
        return 201, {"id": f"promo_{n}", "code": code, "active": True, "percent_off": 20, "amount_off": None,
                     "currency": None, "expires_at": None, "max_redemptions": None, "times_redeemed": 0,
                     "created_at": "2026-03-01T10:00:00Z"}
    if vendor == "partnero":
        return 200, {"data": {"code": code}, "status": 1, "message": "Promotion code created in the app successfully."}
    if vendor == "spacebring":
        return 201, {"promocode": {"id": f"pc_{n}", "code": code, "couponRef": find(body, "couponRef") or "coupon",
                                   "createDate": "2026-03-01T10:00:00Z", "expiration": {"enabled": False},
                                   "limitByFirstPurchase": False,
                                   "limitedRedemption": {"enabled": False, "usage": 0, "value": 0},
                                   "networkRef": "network"}}
    if vendor == "moltin":
        return 201, {"data": {"type": "promotion", "id": f"promotion_{n}", "name": "Promo", "enabled": True}}
    if vendor.startswith("limio"):
        return 200, {"id": f"limio_{n}", "name": find(body, "name") or code, "status": "active",
                     "record_type": find(body, "record_type") or "offer", "service": "limio", "data": {}}
    return 404, {"message": "no such vendor"}


def after_create(method, vendor, path):
    """The documented success answer of a read, archive, deactivation or delete at `path`."""
    last = path.split("?")[0].rstrip("/").split("/")[-1]
    if method == "GET":
        if vendor == "loop":
            return 200, {"promos": []}
        if vendor == "moltin":
            return 200, {"data": [], "meta": {"results": {"total": 0}}}
        if vendor == "partnero":
            return 200, {"data": {"code": last, "times_redeemed": 0}, "status": 1}
        if vendor == "spacebring":
            return 200, {"promocode": {"id": last, "code": "CODE", "archiveDate": None}}
        if vendor.startswith("limio"):
            return 200, {"id": last, "name": "CODE", "data": {"promoCode": "CODE", "status": True}}
    if method == "PUT":
        if vendor == "spacebring":
            return 200, {"promocode": {"id": path.split("/")[-2], "code": "CODE", "archiveDate": "2026-03-01T10:00:00Z"}}
        if vendor.startswith("limio"):
            return 200, {"id": last, "sort_key": "object/promo_code_v2", "data": {"status": False}}
    if method == "DELETE":
        if vendor == "partnero":
            return 200, {"data": {"status": 1, "message": "deleted"}}
        if vendor == "moltin":
            return 204, None
        if vendor.startswith("limio"):
            return 200, {"httpStatusCode": 200, "requestId": "stub", "attempts": 1, "totalRetryDelay": 0}
    return 404, {"message": "no such call"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def later(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        vendor = self.path.strip("/").split("/")[0]
        self.reply(*after_create(self.command, vendor, self.path))

    do_GET = do_PUT = do_DELETE = later

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        vendor = self.path.strip("/").split("/")[0]
        if self.path.endswith("/oauth2/token"):
            status, body = 200, {"access_token": "stub-token", "token_type": "Bearer", "expires_in": 3600}
        else:
            try:
                parsed = json.loads(raw or b"null")
            except ValueError:
                parsed = None
            status, body = answer(vendor, parsed)
        self.reply(status, body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening on %s:%d" % server.server_address, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
