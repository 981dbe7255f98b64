"""``tollway status``'s reading of the exposition: totals, rates, histogram quantiles."""

from __future__ import annotations

from tollway.telemetry.status import parse, quantile, render

TEXT = """
# TYPE tollway_requests_total counter
tollway_requests_total{surface="chat",dialect="openai",model="m",provider="p",status_class="2xx"} 90
tollway_requests_total{surface="chat",dialect="openai",model="m",provider="p",status_class="5xx"} 10
# TYPE tollway_request_duration_seconds histogram
tollway_request_duration_seconds_bucket{surface="chat",model="m",le="0.01"} 50
tollway_request_duration_seconds_bucket{surface="chat",model="m",le="0.1"} 98
tollway_request_duration_seconds_bucket{surface="chat",model="m",le="1.0"} 100
tollway_request_duration_seconds_bucket{surface="chat",model="m",le="+Inf"} 100
tollway_request_duration_seconds_count{surface="chat",model="m"} 100
tollway_request_duration_seconds_sum{surface="chat",model="m"} 3
# TYPE tollway_info gauge
tollway_info{version="9.9"} 1
# TYPE tollway_start_time_seconds gauge
tollway_start_time_seconds 1000
# TYPE tollway_pool_credentials gauge
tollway_pool_credentials{provider="p"} 2
# TYPE tollway_pool_in_flight gauge
tollway_pool_in_flight{provider="p"} 1
"""


def test_quantiles_and_the_screen() -> None:
    second = parse(TEXT)
    first = parse(TEXT.replace("} 90", "} 80"))
    assert quantile(second, "tollway_request_duration_seconds", 0.5) == 0.01
    assert quantile(second, "tollway_request_duration_seconds", 0.99) == 1.0
    screen = render("http://gw", first, second, 2.0, now=4661)
    assert screen.splitlines()[0] == "Tollway 9.9 at http://gw, up 1h 1m 1s"
    assert "100 total, 5.0/s now; 5xx 10 (10.0%)" in screen
    assert "p50 ≤ 10 ms, p99 ≤ 1000 ms" in screen
    assert any(line.startswith("p ") and line.split()[1:3] == ["1", "0"] for line in screen.splitlines())
