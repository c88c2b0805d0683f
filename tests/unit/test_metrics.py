"""The request and command counts of /metrics: what prometheus_client's own Counter and
Histogram would expose for the same requests (README: "Counts without locks")."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from adapters.http.observability import LATENCY_BUCKETS, MAX_LABEL_SETS, Metrics

ROUTES = ("/agents/tasks", "/agents/tasks/{task_id}")


def samples(text: str, family: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A family's samples by (sample name, sorted labels), without ``_created`` series."""
    found = {}
    for metric in text_string_to_metric_families(text):
        if metric.name == family:
            for sample in metric.samples:
                if not sample.name.endswith("_created"):
                    found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_requests_are_counted_by_status_and_timed_into_buckets() -> None:
    metrics = Metrics()
    metrics.request("/agents/tasks", "POST", 201, 0.004)
    metrics.request("/agents/tasks", "POST", 201, 0.001)  # on a bound: counted in it ("le")
    metrics.request("/agents/tasks", "POST", 422, 7.0)  # over the last bound: only in +Inf
    metrics.command("create", "ok")
    metrics.command("create", "ok")

    text = metrics.exposition().decode()

    assert 'tasks_http_requests_total{method="POST",route="/agents/tasks",status="201"} 2.0' in text
    assert 'tasks_http_requests_total{method="POST",route="/agents/tasks",status="422"} 1.0' in text
    bucket = 'tasks_http_request_duration_seconds_bucket{{le="{}",method="POST",route="/agents/tasks"}} {}'
    assert bucket.format("0.001", "1.0") in text
    assert bucket.format("0.005", "2.0") in text
    assert bucket.format("5.0", "2.0") in text
    assert bucket.format("+Inf", "3.0") in text
    assert 'tasks_http_request_duration_seconds_count{method="POST",route="/agents/tasks"} 3.0' in text
    assert 'tasks_http_request_duration_seconds_sum{method="POST",route="/agents/tasks"} 7.005' in text
    assert 'tasks_commands_total{command="create",outcome="ok"} 2.0' in text


def test_methods_beyond_the_bound_are_counted_under_one_label() -> None:
    metrics = Metrics()
    for n in range(MAX_LABEL_SETS + 10):  # e.g. a client inventing methods
        metrics.request("unmatched", f"M{n}", 405, 0.001)
    metrics.request("/agents/tasks", "GET", 200, 0.001)  # a new pair, past the bound too

    text = metrics.exposition().decode()

    assert len(metrics.requests) == MAX_LABEL_SETS + 2
    assert 'tasks_http_requests_total{method="OTHER",route="unmatched",status="405"} 10.0' in text
    assert 'tasks_http_requests_total{method="OTHER",route="/agents/tasks",status="200"} 1.0' in text
    assert 'method="M0",route="unmatched",status="405"} 1.0' in text


requests = st.lists(st.tuples(st.sampled_from(ROUTES), st.sampled_from(("GET", "POST")),
                              st.sampled_from((200, 201, 404, 422)),
                              st.one_of(st.sampled_from(LATENCY_BUCKETS),
                                        st.floats(min_value=0, max_value=10, allow_nan=False))),
                    max_size=40)


@given(requests)
def test_the_exposition_is_what_the_librarys_own_instruments_give(
        answered: list[tuple[str, str, int, float]]) -> None:
    metrics = Metrics()
    registry = CollectorRegistry()
    counter = Counter("tasks_http_requests", "HTTP requests answered", ["route", "method", "status"],
                      registry=registry)
    histogram = Histogram("tasks_http_request_duration_seconds", "Time to answer an HTTP request",
                          ["route", "method"], registry=registry, buckets=LATENCY_BUCKETS)
    for route, method, status, seconds in answered:
        metrics.request(route, method, status, seconds)
        counter.labels(route, method, str(status)).inc()
        histogram.labels(route, method).observe(seconds)

    ours = metrics.exposition().decode()
    theirs = generate_latest(registry).decode()

    for family in ("tasks_http_requests", "tasks_http_request_duration_seconds"):
        mine, reference = samples(ours, family), samples(theirs, family)
        assert mine.keys() == reference.keys()
        for key, value in reference.items():
            assert abs(mine[key] - value) <= 1e-9 * max(1.0, abs(value)), key
