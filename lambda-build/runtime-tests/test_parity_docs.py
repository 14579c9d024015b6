"""Parity, round 2: what the original's documentation shows lambda authors, run unchanged over
real HTTP: `lambdaConfig` as a mapping, user metrics' buckets and `initialize`."""

import json
import sys

from conftest import RUNTIME

sys.path.insert(0, str(RUNTIME))

from luna_lambda_tools.metrics import Histogram  # noqa: E402

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


DOCUMENTED_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
                      2.5, 5.0, 7.5, 10.0)

METRICS = '''
from luna_lambda_tools.public.metrics.user_metrics import Counter, Histogram, monitorLastActivity
from luna_lambda_tools.public.monitoring import monitorLastActivity as from_monitoring

USER_HISTOGRAM = Histogram("user_histo", description="histogram", labelNames=["custom_label"])
USER_COUNTER = Counter("user_counter", description="counter")
LOOSE = Counter("not_listed", description="not in USER_METRICS")
USER_METRICS = [USER_HISTOGRAM, USER_COUNTER]


async def main(request):
    USER_HISTOGRAM.observe(0.6, labels={"custom_label": "value1"})
    USER_COUNTER.inc(1.0)
    return {"ids": [USER_HISTOGRAM.lambdaId, USER_COUNTER.lambdaId, LOOSE.lambdaId],
            "same_registry": USER_HISTOGRAM.registry is USER_COUNTER.registry is not None,
            "loose_registry": LOOSE.registry is None,
            "activity": monitorLastActivity is from_monitoring}
'''


def test_user_metrics_have_the_documented_buckets_and_are_initialized_with_the_lambda_id(start):
    assert Histogram("h", "d").buckets == DOCUMENTED_BUCKETS
    lam = start(files={"lambda_main.py": METRICS}, env={"LAMBDA_ID": "0f7e3c1a-lambda"})
    got = lam.request("GET", "/main").json()
    assert got == {"ids": ["0f7e3c1a-lambda", "0f7e3c1a-lambda", None], "same_registry": True, "loose_registry": True,
                   "activity": True}
    text = lam.request("GET", "/lambda_metrics").body.decode()
    for bound in ("0.075", "0.75", "7.5"):
        assert f'user_histo_bucket{{custom_label="value1",le="{bound}"}}' in text, text
    assert 'user_histo_bucket{custom_label="value1",le="0.5"} 0' in text
    assert 'user_histo_bucket{custom_label="value1",le="0.75"} 1' in text


