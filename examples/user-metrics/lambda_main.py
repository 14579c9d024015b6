"""User metrics: counted on every request and exposed, with the runtime's own request metrics,
on the lambda's /metrics and /lambda_metrics (and, through the platform, on
GET /1/lambdas/{id}/metrics, one `replica` label per replica)."""

from luna_lambda_tools.public.metrics.user_metrics import Counter, Gauge, Histogram, Summary
from luna_lambda_tools.public.standalone.standalone_request import StandaloneLambdaRequest

words = Counter("words_seen", "Words seen in requests, by language.", labelNames=["language"])
in_flight = Gauge("requests_in_flight", "Requests being answered now.")
text_length = Histogram("text_length_chars", "Length of the texts, in characters.", buckets=[10, 100, 1000])
longest = Summary("word_length_chars", "Length of each word, in characters.")

USER_METRICS = [words, in_flight, text_length, longest]


async def main(request: StandaloneLambdaRequest) -> dict:
    in_flight.inc()
    try:
        data = request.json or {}
        text = str(data.get("text", ""))
        language = str(data.get("language", "en"))
        split = text.split()
        words.inc(len(split), labels={"language": language})
        text_length.observe(len(text))
        for word in split:
            longest.observe(len(word))
        return {"words": len(split), "language": language}
    finally:
        in_flight.dec()
