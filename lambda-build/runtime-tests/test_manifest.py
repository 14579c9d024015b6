"""The validator's manifest of the runtime's API is the runtime's real API."""

import json

from gen_manifest import OUT, render


def test_committed_manifest_matches_the_runtime():
    assert OUT.read_text() == render(), (
        "lambda-core/src/runtime_api.json is stale: run `.venv/bin/python lambda-build/runtime-tests/gen_manifest.py`"
    )


def test_manifest_holds_the_documented_paths():
    modules = json.loads(OUT.read_text())["modules"]
    expect = {
        "luna_lambda_tools": ["StandaloneLambdaRequest", "HandlersLambdaRequest", "UserException", "logger", "lambdaConfig"],
        "luna_lambda_tools.public.metrics.user_metrics": ["Counter", "Gauge", "Histogram", "Summary", "monitorLastActivity"],
        "luna_lambda_tools.public.monitoring": ["CustomMonitoringPoint", "monitorLastActivity"],
        "luna_lambda_tools.public.schemas.base": ["BaseSchema", "BoundingBox", "GeoPosition", "Location"],
        "luna_lambda_tools.public.tasks": ["BaseLambdaTask"],
        "luna_lambda_tools.public.user_handlers.base_handler": ["LambdaUserHandler"],
        "luna_lambda_tools.public.run": ["run"],
        "luna_lambda_tools.public.run_debug": ["run"],
        "luna_lambda_tools.public.exceptions": ["UserException", "UserTaskLambdaException"],
        "luna_lambda_tools.public.handlers.schemas": [
            "EventSourceSchema", "EventSource", "EventSourceBase", "EventSourceAggregated", "EventSourceNonAggregated",
            "EventSourceAggregatedDetections", "EventSourceAggregatedRawImage", "EventSourceNonAggregatedDetections",
            "EventSourceNonAggregatedRawImage", "ImageOrigin", "SourceData", "RawDetection", "RawDetectionsAggregated",
            "RawDetectionsNonAggregated", "RawImageAggregated", "RawImageNonAggregated", "FaceDetection",
            "FaceDetectionData", "BodyDetectionData", "Angles", "DetectTs",
        ],
        "luna_lambda_tools.public": ["metrics", "standalone", "handlers"],
    }
    for module, names in expect.items():
        assert set(names) <= set(modules[module]["public"]), (module, modules[module]["public"])
