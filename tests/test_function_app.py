"""The function app indexes as the Functions host will see it, and as the README documents."""

import json
import re

import azure.functions as func
from azure.functions.decorators.http import HttpTrigger
from azure.functions.decorators.timer import TimerTrigger

import function_app
from shared.localhost import indexed, route_prefix, routes
from tests.conftest import ROOT


def registered() -> set[tuple[str, str, str]]:
    prefix = route_prefix(ROOT / "host.json")
    found = set()
    for fn in indexed(function_app.app):
        trigger = fn.get_trigger()
        doc = json.loads(fn.get_function_json())
        assert doc["scriptFile"] == "function_app.py"
        if not isinstance(trigger, HttpTrigger):
            continue
        for method in trigger.methods:
            route = "/" + "/".join(p for p in (prefix, trigger.route) if p)
            found.add((str(method.value), route, fn.get_function_name()))
    return found


def documented() -> set[tuple[str, str, str]]:
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (GET|POST|HEAD) \| `(/[^`]*)` \| `(\w+)` \|", readme, re.M)
    return set(rows)


def test_functions_routes_and_methods_match_the_readme():
    assert (
        registered()
        == documented()
        == {
            ("POST", "/api/predict", "predict"),
            ("POST", "/api/feedback", "feedback"),
            ("GET", "/api/health", "health"),
            ("GET", "/api/model-card", "model_card"),
            ("GET", "/{*path}", "page"),
            ("HEAD", "/{*path}", "page"),
        }
    )


def test_every_route_is_anonymous_and_the_one_timer_purges_daily():
    triggers = {fn.get_function_name(): fn.get_trigger() for fn in indexed(function_app.app)}
    timers = {n: t for n, t in triggers.items() if not isinstance(t, HttpTrigger)}
    assert all(
        t.auth_level == func.AuthLevel.ANONYMOUS for n, t in triggers.items() if n not in timers
    )
    assert list(timers) == ["purge_feedback"]
    assert isinstance(timers["purge_feedback"], TimerTrigger)
    assert timers["purge_feedback"].schedule == "0 30 3 * * *"  # 03:30 UTC every day


def test_local_host_ranks_api_routes_before_the_page():
    table = routes(function_app.app, route_prefix(ROOT / "host.json"))
    assert [r.name for r in table][-1] == "page"
    match = {r.name: bool(r.pattern.fullmatch("api/predict")) for r in table}
    assert match["predict"] and match["page"]  # the page matches too, so rank decides
    assert table[0].pattern.fullmatch("api/predict") or table[1].pattern.fullmatch("api/predict")


def test_api_methods_match_the_registrations():
    """The page route answers 405 for API paths from api.API_METHODS: it must list exactly the
    registered API routes and methods."""
    from shared import api

    listed = {(m, "/" + path, "") for path, methods in api.API_METHODS.items() for m in methods}
    registered_api = {(m, r, "") for m, r, _ in registered() if r.startswith("/api/")}
    assert listed == registered_api
