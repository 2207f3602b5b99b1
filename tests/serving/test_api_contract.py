"""The API contract: offline docs, idempotency conflicts, unknown category warnings, config-driven schema."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from tests.serving.conftest import listing_json

ROOT = Path(__file__).resolve().parents[2]


def test_docs_page_loads_only_from_this_service(serve) -> None:
    with serve() as api:
        page = api.client.get("/docs")
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
        assets = [api.client.get(url) for url in urls]
        unknown = api.client.get("/docs/assets/secrets.txt")

    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "http://" not in page.text and "https://" not in page.text and "//cdn" not in page.text
    assert len(urls) >= 3 and all(url.startswith("/") for url in urls)
    assert all(a.status_code == 200 and a.content for a in assets), [(a.url, a.status_code) for a in assets]
    assert unknown.status_code == 404


def test_the_services_address_in_a_browser_lists_its_pages(serve) -> None:
    """The start-up line gives http://host:port: opening it answered a 404. It lists the pages, each of
    which answers."""
    with serve() as api:
        index = api.client.get("/")
        links = re.findall(r'href="(/[^"]*)"', index.text)
        answers = {link: api.client.get(link).status_code for link in links}

    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert {"/review", "/supervisor", "/simulator", "/rules", "/audit", "/docs"} <= set(links)
    assert all(code == 200 for link, code in answers.items() if link != "/readyz"), answers
    assert "Content-Security-Policy" in index.headers


def test_a_request_id_reused_with_another_body_is_refused_with_409(serve) -> None:
    with serve() as api:
        first = api.score({**listing_json(7), "request_id": "req-7"})
        retry = api.score({**listing_json(7), "request_id": "req-7"})
        changed = api.score({**listing_json(7, price=1.0), "request_id": "req-7"})
        batch = api.batch([listing_json(i) for i in range(3)], request_id="b-1")
        batch_changed = api.batch([listing_json(i, title="other") for i in range(3)], request_id="b-1")
        logged = api.store.count_decisions()

    assert first.status_code == 200 and retry.status_code == 200
    assert retry.json()["decision_id"] == first.json()["decision_id"]
    assert changed.status_code == 409 and batch_changed.status_code == 409, changed.text
    assert "request_id 'req-7' was already used" in changed.json()["detail"]
    assert "different body" in changed.json()["detail"]
    assert batch.status_code == 200 and "request_id 'b-1'" in batch_changed.json()["detail"]
    assert "a batch with a different body" in batch_changed.json()["detail"]  # not one item, maybe unchanged
    assert logged == 4  # one for req-7, three for b-1: nothing logged for the refused requests


def test_two_api_keys_use_the_same_request_id_independently(serve) -> None:
    with serve() as api:
        headers_a, headers_b = api.key("upstream-a", "score"), api.key("upstream-b", "score")
        body_a = {**listing_json(3), "request_id": "shared"}
        body_b = {**listing_json(3, price=2.0), "request_id": "shared"}
        a = api.client.post("/v1/score", json=body_a, headers=headers_a)
        b = api.client.post("/v1/score", json=body_b, headers=headers_b)
        a_again = api.client.post("/v1/score", json=body_a, headers=headers_a)

    assert a.status_code == 200 and b.status_code == 200 and a_again.status_code == 200, b.text
    assert a.json()["decision_id"] != b.json()["decision_id"]
    assert a_again.json()["decision_id"] == a.json()["decision_id"]


def test_unknown_category_values_are_scored_with_a_warning_and_counted(serve) -> None:
    with serve() as api:
        codes = api.app.state.engine.bundle.builder.category_codes
        seen = {"category": next(iter(codes["category"])), "market": next(iter(codes["market"]))}
        known = api.score(listing_json(1, **seen))
        unknown = api.score(listing_json(2, category="xyz", market="Atlantis"))
        batch = api.batch([listing_json(3, category="xyz", market=seen["market"]), listing_json(4, **seen)])
        metrics = api.client.get("/metrics").text

    assert known.status_code == 200 and known.json()["warnings"] == []
    assert unknown.status_code == 200 and unknown.json()["risk"] is not None
    assert unknown.json()["warnings"] == [
        "category 'xyz' was not seen in training; scored as unknown",
        "market 'Atlantis' was not seen in training; scored as unknown",
    ]
    assert [item["warnings"] for item in batch.json()["items"]] == [
        ["category 'xyz' was not seen in training; scored as unknown"],
        [],
    ]
    assert 'triage_unknown_categories_total{column="category"} 2.0' in metrics
    assert 'triage_unknown_categories_total{column="market"} 1.0' in metrics


@pytest.fixture(scope="module")
def renamed_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle trained on an export whose id column is `_id` (a MongoDB export), whose title column
    is `name` and whose description column is `model_config`: names pydantic takes for something else."""
    from training.generate import write_dataset
    from training.pipeline import TrainOptions, train

    out = tmp_path_factory.mktemp("renamed")
    data = pd.read_parquet(write_dataset(out / "generated", rows=4_000, seed=3)["reviews"])
    renamed = {"listing_id": "_id", "title": "name", "description": "model_config"}
    data.rename(columns=renamed).to_parquet(out / "reviews.parquet")
    config = (ROOT / "configs" / "data.yaml").read_text()
    config = config.replace("id: listing_id ", "id: _id ").replace(
        "text: [title, description,", "text: [name, model_config,"
    )
    (out / "renamed.yaml").write_text(config)
    options = TrainOptions(
        data=out / "reviews.parquet",
        config=out / "renamed.yaml",
        out=out / "models",
        seed=3,
        search_trials=2,
        log_mlflow=False,
        show_progress=False,
    )
    return train(options).bundle_dir


def renamed_listing(i: int) -> dict[str, object]:
    body = listing_json(i)
    body["_id"], body["name"] = body.pop("listing_id"), body.pop("title")
    body["model_config"] = body.pop("description")
    return body


def test_a_bundle_trained_with_renamed_columns_takes_its_own_field_names(serve, renamed_bundle: Path) -> None:
    with serve(bundle=str(renamed_bundle)) as api:
        own = api.score(renamed_listing(1))
        no_description = api.score({**renamed_listing(1), "model_config": ""})
        batch = api.batch([renamed_listing(2), renamed_listing(3)])
        marketplace = api.score(listing_json(4))
        bad_item = api.batch([renamed_listing(5), {**renamed_listing(6), "price": -1}])
        spec = api.client.get("/openapi.json").json()
        regulated = api.score({**renamed_listing(7), "category": "health"})  # always human review
        shown = api.client.get("/v1/review/next", headers=api.key("renamed-reviewer", "review")).json()

    assert own.status_code == 200 and own.json()["listing_id"] == "L-1" and own.json()["risk"] is not None
    assert batch.status_code == 200 and [i["listing_id"] for i in batch.json()["items"]] == ["L-2", "L-3"]
    assert marketplace.status_code == 422
    problems = {(d["field"], d["type"]) for d in marketplace.json()["detail"]}
    assert {("_id", "missing"), ("name", "missing"), ("listing_id", "extra_forbidden")} <= problems
    assert [d["field"] for d in bad_item.json()["detail"]] == ["items.1.price"]
    listing = spec["components"]["schemas"]["Listing"]
    assert {"_id", "name"} <= set(listing["required"]) and "listing_id" not in listing["properties"]
    assert listing["properties"]["_id"]["description"] and "title" not in listing["properties"]
    assert "model_config" in listing["properties"] and "column_0" not in listing["properties"]
    # the review console shows the listing's text under the bundle's column names
    assert regulated.json()["decision"] == "human_review"
    context = shown["context"]
    assert (context["title_column"], context["description_column"]) == ("name", "model_config")
    assert context["listing"]["name"] == "Leather wallet, brown" and context["listing"]["model_config"]
    # the description under its column name reaches the model: the text changes the risk
    assert own.json()["risk"] != no_description.json()["risk"]


def test_the_request_schema_follows_a_reloaded_bundle(serve, renamed_bundle: Path) -> None:
    with serve(models_dir=str(renamed_bundle.parent)) as api:  # reload reads only from the models directory
        before = api.client.get("/openapi.json").json()["components"]["schemas"]["Listing"]["properties"]
        forced = {"bundle": str(renamed_bundle), "force": True, "reason": "a bundle of another data contract"}
        reload = api.post("/v1/admin/reload", forced, scope="admin")  # not promoted: loaded by force
        after = api.client.get("/openapi.json").json()["components"]["schemas"]["Listing"]["properties"]
        own = api.score(renamed_listing(1))
        marketplace = api.score(listing_json(2))

    assert "listing_id" in before and "_id" not in before
    assert reload.status_code == 200, reload.text
    assert "_id" in after and "listing_id" not in after
    assert own.status_code == 200 and marketplace.status_code == 422


def test_a_batch_reusing_a_request_id_with_an_item_added_is_refused_and_logs_nothing(serve) -> None:
    """A request_id reused with another body is refused with 409 and nothing is logged, also when the new
    body adds a listing: its decision was logged (and queued for a person) though the client got a 409."""
    with serve() as api:
        first = api.batch([listing_json(i) for i in range(3)], request_id="b-2")
        grown = api.batch([listing_json(i) for i in range(4)], request_id="b-2")
        logged = api.store.count_decisions()
        queued = sum(api.store.queue_counts().values())

    assert first.status_code == 200 and grown.status_code == 409, grown.text
    assert "request_id 'b-2'" in grown.json()["detail"]
    assert logged == 3 and queued == sum(
        i["decision"] == "human_review" or i["qa_sample"] for i in first.json()["items"]
    )
