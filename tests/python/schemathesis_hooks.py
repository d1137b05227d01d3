"""schemathesis hooks for tests/it/openapi.rs (loaded through SCHEMATHESIS_HOOKS).

- `no_server_error`: schemathesis's `not_a_server_error`, less the one 5xx queryd answers on
  purpose: a query whose `min_version` nobody committed is 503 `unavailable` with
  `Retry-After` (README, "Every query may send `min_version`"; docs/decisions.md, "Read your
  writes"): the client retries once a writer committed it. Any other 5xx fails.
- `before_call`: the change feed's long poll (`wait`, up to 60 s when `since` is the latest
  version) is shortened to 1 s, so a run stays within its time; the values still cover the
  parameter's range check (over 60 is refused before any wait).
- a workaround for a CPython bug in hypothesis's naming of lambdas (below).
- deserializers: an Arrow IPC or Parquet answer must read back with pyarrow and an NDJSON one
  line by line as JSON objects, or the answer fails `response_schema_conformance` (the
  document types them as strings of bytes, which say nothing of their content).
"""

import io
import json

import pyarrow.ipc
import pyarrow.parquet
import schemathesis
from hypothesis.internal import lambda_sources
from schemathesis.checks import not_a_server_error

# Python 3.11.7's `ast.parse` sometimes raises SystemError ("AST constructor recursion depth
# mismatch") on a large file parsed deep in a worker thread, as schemathesis's own
# coverage module is when hypothesis names one of its lambdas for a strategy's repr. The
# name is only text: it becomes "<unknown>" instead of ending the run.
_describe_lambda = lambda_sources._lambda_description


def _lambda_description(f):
    try:
        return _describe_lambda(f)
    except SystemError:
        return "lambda: <unknown>"


lambda_sources._lambda_description = _lambda_description


def _min_version_not_committed(response, case):
    if response.status_code != 503:
        return False
    body = case.body if isinstance(case.body, dict) else {}
    if not isinstance(body.get("min_version"), int):
        return False
    try:
        answer = response.json()
    except ValueError:
        return False
    return (
        isinstance(answer, dict)
        and answer.get("kind") == "unavailable"
        and "has not been committed" in str(answer.get("error", ""))
        and response.headers.get("retry-after") is not None
    )


@schemathesis.check
def no_server_error(ctx, response, case):
    if _min_version_not_committed(response, case):
        return None
    return not_a_server_error(ctx, response, case)


@schemathesis.hook
def before_call(context, case, kwargs):
    query = case.query if isinstance(case.query, dict) else None
    if query is None:
        return
    wait = query.get("wait")
    # Only waits within the documented range (0..=60) are shortened; the rest stay as
    # generated, to be refused.
    if isinstance(wait, int) and not isinstance(wait, bool) and 1 < wait <= 60:
        query["wait"] = 1
    elif isinstance(wait, str) and wait.isdigit() and 1 < int(wait) <= 60:
        query["wait"] = "1"


# What a deserializer hands to the schema check: the body as text, which the documented
# schema (a string) takes once the body has been read back.
def _as_text(response):
    return response.content.decode("latin-1")


@schemathesis.deserializer("application/vnd.apache.arrow.stream")
def arrow_stream(ctx, response):
    pyarrow.ipc.open_stream(io.BytesIO(response.content)).read_all()
    return _as_text(response)


@schemathesis.deserializer("application/vnd.apache.parquet")
def parquet_file(ctx, response):
    pyarrow.parquet.read_table(io.BytesIO(response.content))
    return _as_text(response)


@schemathesis.deserializer("application/x-ndjson")
def ndjson(ctx, response):
    for number, line in enumerate(response.text.splitlines(), 1):
        if not isinstance(json.loads(line), dict):
            raise ValueError(f"NDJSON line {number} is not a JSON object")
    return response.text
