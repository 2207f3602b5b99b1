"""The ceiling for Python HTTP on this machine: FastAPI on uvicorn, answering a JSON body with itself.

uvicorn bench.echo_app:app --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
