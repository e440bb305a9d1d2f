"""A Lambda authorizer function behind AWS Lambda's Invoke API, for the function authorizer tests.

The handler is ordinary Lambda code on AWS Lambda Powertools (PyPI): Powertools' data classes
read the event Tollhouse sends (TOKEN, REST REQUEST, HTTP 1.0 and 2.0) and its
APIGatewayAuthorizerResponse builds the IAM policy from the event's method ARN. The server in
front answers POST /2015-03-31/functions/function/invocations as the Invoke API does: the
handler's return value as JSON, or, when it raises, status 200 with `X-Amz-Function-Error:
Unhandled` and `{"errorMessage", "errorType"}`.

The credential ("Bearer MODE" in the token, the first identity source for REQUEST) picks what
the handler does:
  allow:USER        an IAM policy allowing GET on every path of the Stage; context
                    {user, tier: "gold", n: 3, ok: true}
  key:USER:APIKEY   the same, with usageIdentifierKey APIKEY
  deny              a policy denying everything
  yes / no          (2.0) a simple response, context {user: "simple", nested: {a: 1}}
  unauthorized      raise Exception("Unauthorized"): AWS answers 401
  boom              raise Exception("boom"): AWS answers 500
  garbage           a body that is not JSON
  http500           answer with HTTP status 500
  slow:MS           sleep MS milliseconds, then as allow:slow
Control: GET /counts -> {"calls": n}; GET /events -> what Powertools read from each event, and
the raw event; POST /reset.
"""
import json, sys, threading, time, traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerEventV2,
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerResponseV2,
    APIGatewayAuthorizerTokenEvent,
    HttpVerb,
)

port = int(sys.argv[1])
lock = threading.Lock()
calls = {"n": 0}
events = []


class Garbage(Exception):
    pass


class Http500(Exception):
    pass


def read(raw):
    """The event through Powertools' data classes: what a real function would see."""
    if raw.get("type") == "TOKEN":
        e = APIGatewayAuthorizerTokenEvent(raw)
        return e, e.authorization_token, {"kind": "TOKEN", "token": e.authorization_token}
    if raw.get("version") == "2.0":
        e = APIGatewayAuthorizerEventV2(raw)
        rc = e.request_context
        seen = {
            "kind": "2.0",
            "identitySource": e.identity_source,
            "routeKey": e.route_key,
            "rawPath": e.raw_path,
            "rawQueryString": e.raw_query_string,
            # Absent when the request has none (as in AWS's fixture without cookies), which
            # Powertools' strict `cookies` and `query_string_parameters` would raise on.
            "cookies": raw.get("cookies"),
            "headers": dict(e.headers),
            "query": raw.get("queryStringParameters"),
            "pathParameters": e.path_parameters,
            "stageVariables": e.stage_variables,
            "method": rc.http.method,
            "sourceIp": rc.http.source_ip,
            "stage": rc.stage,
            "requestId": rc.request_id,
            "apiId": rc.api_id,
            "accountId": rc.account_id,
        }
        return e, (e.identity_source or [""])[0], seen
    e = APIGatewayAuthorizerRequestEvent(raw)
    rc = e.request_context
    seen = {
        "kind": raw.get("version") or "REST",
        "resource": e.resource,
        "path": e.path,
        "httpMethod": e.http_method,
        "headers": dict(e.headers),
        "query": e.query_string_parameters,
        "pathParameters": e.path_parameters,
        "stageVariables": e.stage_variables,
        "sourceIp": rc.identity.source_ip,
        "stage": rc.stage,
        "requestId": rc.request_id,
        "resourcePath": rc.resource_path,
        "accountId": rc.account_id,
        "identitySource": raw.get("identitySource"),
    }
    first = (raw.get("identitySource") or "").split(",")[0] or e.headers.get("authorization", "")
    return e, first, seen


def handler(raw):
    e, credential, seen = read(raw)
    arn = e.parsed_arn
    seen["arn"] = {"region": arn.region, "account": arn.aws_account_id, "api": arn.api_id,
                   "stage": arn.stage, "method": arn.http_method, "resource": arn.resource}
    with lock:
        events.append({"seen": seen, "raw": raw})
    mode = credential.removeprefix("Bearer ").strip()
    name, _, rest = mode.partition(":")
    if name == "slow":
        time.sleep(int(rest) / 1000)
        name, rest = "allow", "slow"
    if name in ("allow", "key"):
        user, _, api_key = rest.partition(":")
        policy = APIGatewayAuthorizerResponse(
            principal_id=user,
            region=arn.region,
            aws_account_id=arn.aws_account_id,
            api_id=arn.api_id,
            stage=arn.stage,
            context={"user": user, "tier": "gold", "n": 3, "ok": True},
            usage_identifier_key=api_key or None,
        )
        policy.allow_route(HttpVerb.GET.value, "*")
        return policy.asdict()
    if name == "deny":
        policy = APIGatewayAuthorizerResponse.from_route_arn(arn.arn, "denied")
        policy.deny_all_routes()
        return policy.asdict()
    if name in ("yes", "no"):
        return APIGatewayAuthorizerResponseV2(
            authorize=name == "yes", context={"user": "simple", "nested": {"a": 1}}
        ).asdict()
    if name == "unauthorized":
        raise Exception("Unauthorized")
    if name == "garbage":
        raise Garbage()
    if name == "http500":
        raise Http500()
    raise Exception("boom")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            if self.path == "/counts":
                return self.answer(200, {"calls": calls["n"]})
            if self.path == "/events":
                return self.answer(200, events)
        self.answer(404, {"message": "no"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/reset":
            with lock:
                calls["n"] = 0
                events.clear()
            return self.answer(200, {})
        if self.path != "/2015-03-31/functions/function/invocations":
            return self.answer(404, {"message": "no"})
        with lock:
            calls["n"] += 1
        try:
            self.answer(200, handler(json.loads(body)))
        except Garbage:
            self.answer(200, b"this is not json")
        except Http500:
            self.answer(500, {"message": "down"})
        except Exception as err:  # the Invoke API's function error
            if str(err) not in ("Unauthorized", "boom"):
                traceback.print_exc()
            self.answer(200, {"errorMessage": str(err), "errorType": type(err).__name__},
                        [("X-Amz-Function-Error", "Unhandled")])


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("ready", flush=True)
server.serve_forever()
