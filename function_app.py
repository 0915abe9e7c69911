"""Azure Functions (Python v2 programming model): thin HTTP handlers over `shared.api`.

Predict is anonymous on purpose: the public page calls it from the browser, where a function
key could not be kept secret. Put API Management or Easy Auth in front to restrict it.
"""

import azure.functions as func

from shared import api

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def reply(status: int, body: dict) -> func.HttpResponse:
    return func.HttpResponse(
        api.dumps(body),
        status_code=status,
        mimetype="application/json",
        headers={**api.SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


@app.route(route="api/predict", methods=["POST"])
def predict(req: func.HttpRequest) -> func.HttpResponse:
    ctype = req.headers.get("content-type", "")
    upload = req.files.get("image") if ctype.startswith("multipart/form-data") else None
    crops, explain = req.params.get("crops") == "1", req.params.get("explain") == "1"
    return reply(*api.predict(ctype, req.get_body(), upload and upload.read(), crops, explain))


@app.route(route="api/health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    return reply(*api.health())


@app.route(route="api/model-card", methods=["GET"])
def model_card(req: func.HttpRequest) -> func.HttpResponse:
    status, headers, body = api.model_card()
    return func.HttpResponse(body, status_code=status, headers={**api.SECURITY_HEADERS, **headers})


@app.route(route="{*path}", methods=["GET", "HEAD"])
def page(req: func.HttpRequest) -> func.HttpResponse:
    status, headers, body = api.static_file(req.route_params.get("path") or "")
    return func.HttpResponse(body, status_code=status, headers={**api.SECURITY_HEADERS, **headers})
