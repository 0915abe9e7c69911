"""Azure Functions (Python v2 programming model): thin HTTP handlers over `shared.api`, and a
daily timer that enforces the feedback retention.

Predict is anonymous on purpose: the public page calls it from the browser, where a function
key could not be kept secret. Put API Management or Easy Auth in front to restrict it.
"""

import logging

import azure.functions as func

from shared import api, images, telemetry

# Freed image memory goes back to the system (images.return_freed_memory says why): a worker
# on a 2 GB Flex Consumption instance must not keep every large decode's high-water mark.
images.return_freed_memory()
# Traces to Application Insights when APPLICATIONINSIGHTS_CONNECTION_STRING is set; else nothing.
telemetry.setup()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def reply(status: int, body: dict) -> func.HttpResponse:
    return func.HttpResponse(
        api.dumps(body),
        status_code=status,
        mimetype="application/json",
        headers=api.response_headers(status, body),
    )


@app.route(route="api/predict", methods=["POST"])
def predict(req: func.HttpRequest) -> func.HttpResponse:
    crops, explain = req.params.get("crops") == "1", req.params.get("explain") == "1"
    ctype = req.headers.get("content-type", "")
    return reply(*api.predict(ctype, req.get_body(), crops, explain))


@app.route(route="api/feedback", methods=["POST"])
def feedback(req: func.HttpRequest) -> func.HttpResponse:
    ctype = req.headers.get("content-type", "")
    client = req.headers.get("x-forwarded-for", "")
    return reply(*api.feedback(ctype, req.get_body(), client))


# Feedback is kept no longer than the page and README promise (FAKEFACES_FEEDBACK_RETENTION_DAYS).
@app.timer_trigger(schedule="0 30 3 * * *", arg_name="timer", run_on_startup=False)
def purge_feedback(timer: func.TimerRequest) -> None:
    logging.info("feedback retention: %d old records deleted", api.purge_feedback())


@app.route(route="api/health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    return reply(*api.health())


@app.route(route="api/model-card", methods=["GET"])
def model_card(req: func.HttpRequest) -> func.HttpResponse:
    status, headers, body = api.model_card()
    return func.HttpResponse(body, status_code=status, headers={**api.SECURITY_HEADERS, **headers})


@app.route(route="{*path}", methods=["GET", "HEAD"])
def page(req: func.HttpRequest) -> func.HttpResponse:
    path = req.route_params.get("path") or ""
    status, headers, body = api.static_file(path, req.method)
    return func.HttpResponse(body, status_code=status, headers={**api.SECURITY_HEADERS, **headers})
