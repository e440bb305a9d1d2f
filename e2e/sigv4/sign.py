"""Signs and sends requests with botocore (PyPI), AWS's own SigV4 signer, for the SigV4 tests.

Reads a JSON list of cases on stdin and prints a JSON list of answers. A case:
  {"method": "GET", "url": "http://127.0.0.1:8080/iam/x?a=b", "params": {...}, "body": "...",
   "headers": {...}, "access_key": ..., "secret_key": ..., "token": null, "region": "us-east-1",
   "service": "execute-api", "skew": 0, "sign": true}
`skew` (seconds) moves the signer's clock; `sign: false` sends the request unsigned. An answer:
  {"status": 200, "body": "...", "error_type": "...", "authorization": "..."}
"""
import datetime, json, sys

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.compat import get_current_datetime
from botocore.credentials import Credentials
from botocore.httpsession import URLLib3Session


def clock(skew):
    """botocore's clock (botocore.auth reads it through get_current_datetime), moved."""
    return lambda *a, **k: get_current_datetime(*a, **k) + datetime.timedelta(seconds=skew)


session = URLLib3Session()
answers = []
for case in json.load(sys.stdin):
    req = AWSRequest(
        method=case.get("method", "GET"),
        url=case["url"],
        params=case.get("params") or {},
        data=(case.get("body") or "").encode(),
        headers=case.get("headers") or {},
    )
    if case.get("sign", True):
        botocore.auth.get_current_datetime = clock(case.get("skew", 0))
        creds = Credentials(case["access_key"], case["secret_key"], case.get("token"))
        botocore.auth.SigV4Auth(creds, case.get("service", "execute-api"), case["region"]).add_auth(req)
        botocore.auth.get_current_datetime = get_current_datetime
    resp = session.send(req.prepare())
    answers.append({
        "status": resp.status_code,
        "body": resp.content.decode(),
        "error_type": resp.headers.get("x-amzn-ErrorType"),
        "authorization": req.headers.get("Authorization"),
    })
print(json.dumps(answers))
