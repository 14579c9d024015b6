"""Schemathesis hooks of scripts/fuzz-api's account-isolation run (a non-admin token of account B).

Half the generated lambda ids are account A's real lambda, and no answer to B's token may reach
it (any status below 400) or show A's lambda or account id in a successful body.
"""

import os
import random

import schemathesis

FOREIGN_LAMBDA = os.environ["FUZZ_FOREIGN_LAMBDA"]
FOREIGN_ACCOUNT = os.environ["FUZZ_FOREIGN_ACCOUNT"]


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    if path_parameters and "lambda_id" in path_parameters and random.random() < 0.5:
        path_parameters["lambda_id"] = FOREIGN_LAMBDA
    return path_parameters


# The web console's pages: the same HTML for any id, holding no data (the page asks the API,
# with the user's token, for what it shows), so reaching them says nothing about access.
CONSOLE_PAGES = ("/lambdas/{lambda_id}", "/lambdas/{lambda_id}/invoke")


@schemathesis.check
def no_foreign_data(ctx, response, case):
    foreign = (case.path_parameters or {}).get("lambda_id") == FOREIGN_LAMBDA
    if foreign and case.path not in CONSOLE_PAGES and response.status_code < 400:
        raise AssertionError(
            f"another account's lambda was reached with status {response.status_code}"
        )
    if response.status_code < 300:
        body = response.content or b""
        for secret in (FOREIGN_LAMBDA, FOREIGN_ACCOUNT):
            if secret.encode() in body:
                raise AssertionError(f"a successful answer shows the other account's {secret}")
