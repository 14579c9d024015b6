"""Parity, round 2: what the original's documentation shows lambda authors, run unchanged over
real HTTP: `lambdaConfig` as a mapping."""

import json

CONFIG = '''
from luna_lambda_tools import StandaloneLambdaRequest, lambdaConfig
from luna_lambda_tools.public.config import lambdaConfig as public_config


async def main(request: StandaloneLambdaRequest) -> dict:
    if request.args.get("missing"):
        return {"never": lambdaConfig["no_such_key"]}
    result = {
        "title": lambdaConfig["name"],
        "version": lambdaConfig["version"],
        "feature1_enabled": lambdaConfig["features"]["feature_1"],
        "username": lambdaConfig["users"][0]["name"],
    }
    return {
        **result,
        "same": public_config is lambdaConfig,
        "get": lambdaConfig.get("absent", "dflt"),
        "in": ["name" in lambdaConfig, "absent" in lambdaConfig],
        "iter": sorted(lambdaConfig),
        "keys": sorted(lambdaConfig.keys()),
        "items": len(dict(lambdaConfig.items())),
        "len": len(lambdaConfig),
        "userConfig": lambdaConfig.userConfig == request.config.userConfig,
        "port": lambdaConfig.port,
    }
'''


def test_lambda_config_is_a_mapping_over_the_current_user_config(start, tmp_path):
    cfg = tmp_path / "user_config.json"
    first = {"name": "gate", "version": 3, "features": {"feature_1": True}, "users": [{"name": "ann"}]}
    cfg.write_text(json.dumps(first))
    lam = start(files={"lambda_main.py": CONFIG}, env={"LAMBDA_USER_CONFIG_FILE": str(cfg)})
    r = lam.request("GET", "/main")
    assert r.status == 200, r.body
    assert r.json() == {
        "title": "gate", "version": 3, "feature1_enabled": True, "username": "ann", "same": True, "get": "dflt",
        "in": [True, False], "iter": ["features", "name", "users", "version"],
        "keys": ["features", "name", "users", "version"], "items": 4, "len": 4, "userConfig": True, "port": lam.port,
    }
    missing = lam.request("GET", "/main?missing=1")
    assert missing.status == 500 and missing.json()["error_code"] == 42004
    assert "lambdaConfig has no key 'no_such_key'; the user config's keys: features, name, users, version" in missing.json()["detail"]
    # A PUT .../config restarts the lambda with the new config file: the new values are read.
    lam.stop()
    cfg.write_text(json.dumps({**first, "name": "door", "users": [{"name": "bob"}]}))
    again = start(files={"lambda_main.py": CONFIG}, env={"LAMBDA_USER_CONFIG_FILE": str(cfg)}).request("GET", "/main").json()
    assert (again["title"], again["username"]) == ("door", "bob")


