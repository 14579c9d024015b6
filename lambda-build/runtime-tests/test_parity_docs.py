"""Parity, round 2: what the original's documentation shows lambda authors, run unchanged over
real HTTP: `lambdaConfig` as a mapping, handlers `request.data` as an `EventSourceSchema`, the
schema classes, user metrics' buckets and `initialize`, monitoring points, the Sanic request
methods, `LambdaUserHandler`'s `validateJson`/`stream`/`dispatchRequest`/`addDataForMonitoring`,
and `BaseLambdaTask`'s other names."""

import json
import re
import sys
import time

import msgpack
import pytest

from conftest import RUNTIME

sys.path.insert(0, str(RUNTIME))

from luna_lambda_tools.metrics import Histogram  # noqa: E402
from luna_lambda_tools.public.handlers import schemas  # noqa: E402
from luna_lambda_tools.public.schemas import base  # noqa: E402

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


SOURCES = '''
from luna_lambda_tools import HandlersLambdaRequest, logger
from luna_lambda_tools.public.handlers.schemas import EventSourceAggregated, EventSourceSchema


async def main(request: HandlersLambdaRequest) -> dict:
    if request.args.get("raw"):
        return {"raw": request.json}
    logger.info("sources: %s", request.data.sources)
    data = request.data
    return {
        "once": data is request.data,
        "schema": isinstance(data, EventSourceSchema),
        "classes": [type(s).__name__ for s in data.sources],
        "aggregated": [isinstance(s, EventSourceAggregated) for s in data.sources],
        "filenames": [s.filename for s in data.sources],
        "aggregateAttributes": data.aggregateAttributes,
        "useExifInfo": data.useExifInfo,
        "raw_kept": request.json is not data,
        "asDict": None if request.headers.get("content-type") == "application/msgpack" else data.asDict(),  # bytes
    }
'''


def test_handlers_request_data_is_the_event_source_schema(start):
    lam = start(files={"lambda_main.py": SOURCES}, env={"LAMBDA_TYPE": "handlers"})
    body = {
        "sources": [
            {"filename": "a.jpg", "image_origin": "http://cam/1", "source_data": {"tags": ["gate"]}},
            {"detections": [{"face_detection": {"warp": "d2FycA==", "score": 0.9}}], "detect_ts": 1.5},
        ],
        "use_exif_info": 0,
    }
    r = lam.request("POST", "/main", body)
    assert r.status == 200, r.body
    got = r.json()
    assert got["once"] and got["schema"] and got["raw_kept"]
    assert got["classes"] == ["EventSourceNonAggregatedRawImage", "EventSourceNonAggregatedDetections"]
    assert got["aggregated"] == [False, False] and got["filenames"] == ["a.jpg", None]
    assert (got["aggregateAttributes"], got["useExifInfo"]) == (False, False)
    assert got["asDict"]["sources"][0]["source_data"] == {"tags": ["gate"], "user_data": "", "external_id": ""}
    assert lam.request("POST", "/main?raw=1", body).json() == {"raw": body}
    # MessagePack, as luna-handlers sends it, aggregated: image bodies are bytes.
    packed = msgpack.packb({"sources": [{"body": b"\xff\xd8img"}, {"body": b"\xff\xd8two"}], "aggregate_attributes": 1})
    agg = lam.request("POST", "/main", packed, headers={"Content-Type": "application/msgpack"}).json()
    assert agg["classes"] == ["EventSourceAggregatedRawImage"] * 2 and agg["aggregated"] == [True, True]
    assert agg["aggregateAttributes"] is True
    lam.stop()
    log = lam.output()
    assert "sources: [EventSourceNonAggregatedRawImage(filename='a.jpg'" in log, log


@pytest.mark.parametrize(
    "body, detail",
    [
        ({"sources": []}, "sources: List should have at least 1 item"),
        ({"aggregate_attributes": 1}, "sources: Field required"),
        ({"sources": [{"filename": 7}]}, "sources.0.filename: Input should be a valid string"),
        ({"sources": [{"detect_ts": -1}]}, "sources.0.detect_ts: Input should be greater than or equal to 0"),
        ({"sources": [{"image": "x"}]}, "sources.0.image: Extra inputs are not permitted"),
        ({"sources": [{"source_data": {}}], "aggregate_attributes": 1}, "sources.0.source_data: Extra inputs are not permitted"),
        ({"sources": [{"detections": [{}]}]}, "sources.0.detections.0: Value error, a detection needs face_detection"),
        ([1, 2], "(the body): Input should be a valid dictionary"),
    ],
)
def test_a_body_that_does_not_match_the_schema_is_a_400_naming_the_field(start, body, detail):
    lam = start(files={"lambda_main.py": SOURCES}, env={"LAMBDA_TYPE": "handlers"})
    r = lam.request("POST", "/main", body)
    assert r.status == 400, r.body
    assert r.json()["error_code"] == 12001 and r.json()["desc"] == "Bad input data"
    assert r.json()["detail"].startswith("request data does not match EventSourceSchema: " + detail), r.json()


def test_a_handlers_lambda_that_does_not_read_data_takes_any_body(start):
    lam = start(files={"lambda_main.py": SOURCES}, env={"LAMBDA_TYPE": "handlers"})
    assert lam.request("POST", "/main?raw=1", [1, 2]).json() == {"raw": [1, 2]}


# The fields the original's API reference pages list for each class (see docs/runtime-parity.md).
DOCUMENTED_FIELDS = {
    "EventSourceSchema": {"sources", "aggregateAttributes", "useExifInfo", "sourceData"},
    "EventSourceBase": {"filename", "detectTime", "detectTs", "imageOrigin"},
    "ImageOrigin": {"body", "bodyMeta"},
    "SourceData": {"source", "streamId", "tags", "userData", "externalId", "trackId", "meta", "eventTime", "eventEndTime", "location"},
    "Angles": {"pitch", "roll", "yaw"},
    "FaceDetection": {"angles", "score", "warp", "originBoundingBox", "boundingBox", "meta"},
    "FaceDetectionData": {"boundingBox", "originBoundingBox", "angles", "score"},
    "BodyDetectionData": {"boundingBox", "originBoundingBox"},
    "RawDetection": {"warp", "boundingBox", "meta"},
    "RawImageAggregated": {"body", "faceBoundingBoxes", "bodyBoundingBoxes", "meta"},
    "EventSource": {"sourceData", "body", "bodyMeta", "filename", "sourceType", "faceBoundingBoxes", "bodyBoundingBoxes",
                    "detectTime", "detectTs", "imageOrigin"},
}
DOCUMENTED_BASE_FIELDS = {
    "BoundingBox": {"x", "y", "width", "height"},
    "GeoPosition": {"latitude", "longitude"},
    "Location": {"geoPosition", "street", "houseNumber", "district", "area", "city"},
}


def test_schema_classes_have_the_originals_fields_with_snake_case_aliases():
    for module, table in ((schemas, DOCUMENTED_FIELDS), (base, DOCUMENTED_BASE_FIELDS)):
        for name, fields in table.items():
            model = getattr(module, name)
            assert set(model.model_fields) == fields, name
            for field, info in model.model_fields.items():
                assert info.alias == re.sub(r"([A-Z])", r"_\1", field).lower(), (name, field, info.alias)
    for name in ("EventSourceAggregatedRawImage", "EventSourceAggregatedDetections", "EventSourceNonAggregatedRawImage",
                 "EventSourceNonAggregatedDetections", "RawDetectionsAggregated", "RawDetectionsNonAggregated",
                 "RawImageNonAggregated", "DetectTs", "EventSourceAggregated", "EventSourceNonAggregated"):
        assert hasattr(schemas, name), name
    # Both spellings of a field are accepted; asDict answers the wire's.
    loc = base.Location.model_validate({"houseNumber": "1", "geo_position": {"latitude": 1.5, "longitude": 2}})
    assert loc.asDict() == {"house_number": "1", "geo_position": {"latitude": 1.5, "longitude": 2.0}}
    ts = schemas.EventSourceBase(detect_ts=12.5).detectTs
    assert isinstance(ts, schemas.DetectTs) and ts == 12.5
    detections = schemas.EventSourceSchema.model_validate(
        {"sources": [{"detections": [{"body_detection": {"warp": b"w", "bounding_box": {"x": 1, "y": 2, "width": 3, "height": 4}}}]}],
         "aggregate_attributes": True})
    source = detections.sources[0]
    assert isinstance(source, schemas.EventSourceAggregatedDetections)
    assert source.detections[0].bodyDetection.boundingBox.width == 3


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


MONITORING = '''
from luna_lambda_tools import StandaloneLambdaRequest
from luna_lambda_tools.public.monitoring import CustomMonitoringPoint


class DetectionsPoint(CustomMonitoringPoint):
    series = "detections"


class NoSeries(CustomMonitoringPoint):
    pass


async def main(request: StandaloneLambdaRequest) -> dict:
    what = request.args.get("what")
    if what == "bool":
        DetectionsPoint({"camera": True}, {})
    if what == "no-series":
        NoSeries({}, {})
    if what == "not-a-point":
        request.sendToMonitoring([{"series": "x"}])
    point = DetectionsPoint({"camera": "gate"}, {"faces": 3}, eventTime=1700000000.5)
    request.sendToMonitoring(point)
    request.sendToMonitoring([DetectionsPoint({"camera": "door"}, {"faces": 1})])
    request.dataForMonitoring.add(tags={"kind": "face"}, fields={"matched": 2})
    return {"tags": point.tags, "fields": point.fields, "series": point.series, "service": point.service}
'''


def monitoring_points(log):
    return [json.loads(line.split("monitoring point ", 1)[1]) for line in log.splitlines() if "monitoring point " in line]


def test_monitoring_points_go_to_the_log_and_are_counted(start):
    lam = start(files={"lambda_main.py": MONITORING}, env={"LAMBDA_ID": "lam-9"})
    before = time.time()
    r = lam.request("POST", "/main", {}, headers={"Luna-Request-Id": "1700000000,abc"})
    assert r.status == 200, r.body
    assert r.json() == {"tags": {"service": "lambda-lam-9", "camera": "gate"}, "fields": {"faces": 3}, "series": "detections",
                        "service": "lambda-lam-9"}
    for what, message in (("bool", "monitoring tag 'camera'=True: names are strings and values strings, integers or floats"),
                          ("no-series", "NoSeries must set `series` (a non-empty string) to be sent"),
                          ("not-a-point", "sendToMonitoring takes CustomMonitoringPoint objects, not dict")):
        bad = lam.request("POST", f"/main?what={what}", {})
        assert bad.status == 500 and message in bad.json()["detail"], bad.body
    text = lam.request("GET", "/lambda_metrics").body.decode()
    assert 'lambda_monitoring_points_total{series="detections"} 2' in text, text
    assert 'lambda_monitoring_points_total{series="requests"} 1' in text, text
    lam.stop()
    points = monitoring_points(lam.output())
    assert points[0] == {"series": "detections", "time": 1700000000.5, "tags": {"service": "lambda-lam-9", "camera": "gate"},
                         "fields": {"faces": 3}}
    assert points[1]["tags"] == {"service": "lambda-lam-9", "camera": "door"} and before <= points[1]["time"] <= time.time()
    request_point = points[2]
    assert request_point["series"] == "requests" and before <= request_point["time"] <= time.time()
    assert request_point["tags"] == {"service": "lambda-lam-9", "route": "POST:/main", "status_code": 200, "kind": "face"}
    assert request_point["fields"]["request_id"] == "1700000000,abc" and request_point["fields"]["matched"] == 2
    assert 0 <= request_point["fields"]["execution_time"] < 5
    assert len(points) == 3, points  # the failed requests added nothing to their points


SANIC = '''
import json
from luna_lambda_tools import StandaloneLambdaRequest


async def main(request: StandaloneLambdaRequest) -> dict:
    if request.args.get("loads"):
        return {"loaded": request.load_json(loads=lambda raw: {"length": len(raw)})}
    if request.args.get("strict"):
        return {"pairs": request.get_query_args(strict_parsing=True)}
    return {
        "start": request.startRequestTime,
        "args": request.get_args(),
        "blank": request.get_args(keep_blank_values=True),
        "pairs": request.get_query_args(),
        "json": request.load_json(),
    }
'''


def test_request_start_time_and_the_sanic_methods(start):
    lam = start(files={"lambda_main.py": SANIC})
    before = time.time()
    got = lam.request("POST", "/main?a=1&b=&a=2&c=%20x", {"k": [1]}).json()
    assert before - 0.01 <= got["start"] <= time.time()
    assert got["args"] == {"a": ["1", "2"], "c": [" x"]}
    assert got["blank"] == {"a": ["1", "2"], "b": [""], "c": [" x"]}
    assert got["pairs"] == [["a", "1"], ["a", "2"], ["c", " x"]]
    assert got["json"] == {"k": [1]}
    assert lam.request("POST", "/main?loads=1", b"12345").json() == {"loaded": {"length": 5}}
    bad = lam.request("POST", "/main", b"{nope")
    assert bad.status == 400 and bad.json()["error_code"] == 12001
    strict = lam.request("GET", "/main?strict=1&novalue")
    assert strict.status == 400 and strict.json()["error_code"] == 12004 and "malformed" in strict.json()["detail"]


HANDLERS = '''
from luna_lambda_tools import LambdaUserHandler

ITEM = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "integer"}}},
    "required": ["name"],
}


class Items(LambdaUserHandler):
    route = "/items/<item_id:int>"

    async def dispatchRequest(self, request=None, *args, **kwargs):
        answer = await super().dispatchRequest(request, *args, **kwargs)
        if isinstance(answer, dict):
            answer["wrapped"] = True
        return answer

    async def post(self, item_id):
        self.validateJson(self.request.json, ITEM)
        self.addDataForMonitoring(tags={"item": str(item_id)}, fields={"tags": len(self.request.json.get("tags", []))})
        return {"id": item_id, "name": self.request.json["name"]}


class Ticks(LambdaUserHandler):
    route = "/ticks/<n:int>"

    async def get(self, n):
        async def ticks(response):
            for i in range(n):
                await response.write(f"tick {i}\\n")
            if self.request.args.get("fail"):
                raise RuntimeError("the stream broke")
            await response.write(b"done\\n")

        return self.stream(ticks, headers={"X-Ticks": str(n)})


async def main(request):
    return {}
'''


def test_user_handler_validate_json_stream_dispatch_and_monitoring(start):
    lam = start(files={"lambda_main.py": HANDLERS}, env={"LAMBDA_ID": "lam-h"})
    ok = lam.request("POST", "/items/7", {"name": "lamp", "tags": [1, 2]})
    assert ok.status == 200 and ok.json() == {"id": 7, "name": "lamp", "wrapped": True}, ok.body
    for body, where in (({"tags": []}, "data must contain ['name'] properties"),
                        ({"name": "x", "tags": [1, "two"]}, "data.tags[1] must be integer"),
                        ([1], "data must be object")):
        bad = lam.request("POST", "/items/7", body)
        assert bad.status == 400 and bad.json()["error_code"] == 12001, bad.body
        assert bad.json()["detail"] == f"data does not match the JSON schema: {where}", bad.json()
    assert lam.request("GET", "/items/7").status == 405
    ticks = lam.request("GET", "/ticks/3")
    assert ticks.status == 200 and ticks.body == b"tick 0\ntick 1\ntick 2\ndone\n"
    assert ticks.headers["transfer-encoding"] == "chunked" and "content-length" not in ticks.headers
    assert ticks.headers["x-ticks"] == "3" and ticks.headers["content-type"].startswith("text/plain")
    assert ticks.headers["lambda-version"] == "7" and ticks.headers["luna-request-id"]
    broken = lam.request("GET", "/ticks/2?fail=1")
    assert broken.status == 200 and broken.body == b"tick 0\ntick 1\n"
    lam.stop()
    log = lam.output()
    assert "the streamed answer failed" in log and "RuntimeError: the stream broke" in log, log
    points = monitoring_points(log)
    assert len(points) == 1, points  # only the request that added data has a point
    assert points[0]["tags"] == {"service": "lambda-lam-h", "route": "POST:/items/<item_id:int>", "status_code": 200, "item": "7"}
    assert points[0]["fields"]["tags"] == 2


TASK = '''
from luna_lambda_tools import logger
from luna_lambda_tools.public.monitoring import CustomMonitoringPoint
from luna_lambda_tools.public.tasks import BaseLambdaTask


class SquaresPoint(CustomMonitoringPoint):
    series = "squares"


class Squares(BaseLambdaTask):
    async def onStart(self):
        self.started = self.lambdaId

    async def onShutDown(self):
        logger.info("shut down by onShutDown")

    async def splitTask2SubTasks(self, taskContentRequest):
        return [{"x": x} for x in range(taskContentRequest["n"])]

    async def execute(self, taskData):
        x = taskData["x"]
        if x == 2:
            raise self.createSubTaskError("two is not square enough")
        if x == 3:
            raise self.createErrors(self.taskId, 3, "lambda", "no face", "no body")
        self.sendToMonitoring(SquaresPoint({"task": self.taskId}, {"x": x}))
        return {"square": x * x, "started": self.started}
'''


def test_tasks_lambda_with_the_originals_other_names(start):
    lam = start(files={"lambda_main.py": TASK}, env={"LAMBDA_TYPE": "tasks", "LAMBDA_ID": "lam-t"})
    call = {"task_id": "t-2", "account_id": "acc", "content": {"n": 4}}
    split = lam.request("POST", "/tasks/split", call)
    assert split.status == 200 and split.json() == {"subtasks": [{"x": 0}, {"x": 1}, {"x": 2}, {"x": 3}]}
    one = lam.request("POST", "/tasks/subtask", {**call, "subtask": 1, "content": {"x": 1}})
    assert one.json() == {"result": {"square": 1, "started": "lam-t"}}
    two = lam.request("POST", "/tasks/subtask", {**call, "subtask": 2, "content": {"x": 2}})
    assert two.status == 422 and two.json()["detail"] == "two is not square enough"
    three = lam.request("POST", "/tasks/subtask", {**call, "subtask": 3, "content": {"x": 3}})
    assert three.status == 422 and three.json()["detail"] == "task t-2 subtask 3 (lambda): no face; no body"
    assert 'lambda_monitoring_points_total{series="squares"} 1' in lam.request("GET", "/metrics").body.decode()
    assert lam.stop() == 0
    log = lam.output()
    assert "shut down by onShutDown" in log
    assert monitoring_points(log)[0]["tags"] == {"service": "lambda-lam-t", "task": "t-2"}


def test_a_task_class_needs_one_name_of_each_step(start):
    source = ("from luna_lambda_tools import BaseLambdaTask\nclass T(BaseLambdaTask):\n"
              "    async def splitTask2SubTasks(self, c):\n        return []\n")
    lam = start(files={"lambda_main.py": source}, env={"LAMBDA_TYPE": "tasks"}, healthy=False)
    assert lam.proc.wait(timeout=20) == 3
    assert "T must define `async def executeSubtask(self, ...)` (or `execute`)" in lam.output()
    sync = source + "    def execute(self, t):\n        return {}\n"
    lam = start(files={"lambda_main.py": sync}, env={"LAMBDA_TYPE": "tasks"}, healthy=False)
    assert lam.proc.wait(timeout=20) == 3
    assert "T.execute must be `async def`" in lam.output()
