"""A Lambda Runtime API emulator: run a function image locally the way Lambda runs it.

Lambda drives a function from outside its sandbox: the runtime inside the container asks the
Runtime API (``AWS_LAMBDA_RUNTIME_API``) for the next event and posts back a response or an error.
This package serves that API from the host, to one container at a time, and the invoke endpoint
``POST /2015-03-31/functions/function/invocations`` to callers, like AWS's runtime interface
emulator — which cannot be fetched here, and could not drive an image that lacks it anyway.

Where each part lives:

``function``     the function's configuration and results, Lambda's limits and error shape
``runtime_api``  the Runtime API server the runtime talks to, and the events it hands out
``container``    the function's container, started with Lambda's settings, watched and removed
``environment``  ``ExecutionEnvironment``: one container and its Runtime API, one event at a time
``invoke``       the invoke endpoint (``serve``), ``invoke_once`` and the CLI's argument checks
``options``      the function's variables, layers and name as the user gives them
``http_json``    the HTTP server and handler base both endpoints share

API references: https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html and
https://docs.aws.amazon.com/lambda/latest/dg/images-test.html.
"""

from .container import CONTAINER_LABEL
from .environment import ExecutionEnvironment
from .function import LAMBDA_USER, FunctionConfig, InvokeResult, function_arn
from .invoke import (
    INVOKE_PATH,
    check_code_dir,
    check_timeout,
    function_config,
    invoke_once,
    read_event,
    serve,
)
from .runtime_api import RUNTIME_PREFIX, Invocation, RuntimeAPIServer, RuntimeState

__all__ = [
    "CONTAINER_LABEL",
    "INVOKE_PATH",
    "LAMBDA_USER",
    "RUNTIME_PREFIX",
    "ExecutionEnvironment",
    "FunctionConfig",
    "Invocation",
    "InvokeResult",
    "RuntimeAPIServer",
    "RuntimeState",
    "check_code_dir",
    "check_timeout",
    "function_arn",
    "function_config",
    "invoke_once",
    "read_event",
    "serve",
]
