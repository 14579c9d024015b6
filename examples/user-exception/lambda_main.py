"""Refuses bad input with UserException: the caller gets that status and the error text."""

from luna_lambda_tools import StandaloneLambdaRequest, UserException


async def main(request: StandaloneLambdaRequest) -> dict:
    body = request.json or {}
    age = body.get("age")
    if not isinstance(age, int):
        raise UserException(422, "field 'age' must be an integer")
    return {"adult": age >= 18}
