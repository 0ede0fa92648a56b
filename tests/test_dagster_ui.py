"""The pipeline as users run it: a real ``dagster dev``, driven through its GraphQL API and
through the UI in headless Chromium."""

import shutil
from pathlib import Path

import pytest
from conftest import TINY
from dagster_dev import BACKFILL_STATUS, LAUNCH_BACKFILL, REPO, RUN_TIMES, start_dagster_dev
from playwright.sync_api import sync_playwright

from omnisage_assets.lib.embedding_reader import EmbeddingReader

DAY = TINY.days[0]
BACKFILL_DAYS = TINY.days[1:4]
# Steps in the run's own process: on 2 cores, a process per step costs more than the steps.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
FAST = {**IN_PROCESS, "ops": {"omnisage_checkpoint": {"config": {"steps": 40, "warmup_steps": 5, "checkpoint_every": 0}}}}
# Where the UI test leaves its screenshots (CI keeps them as artifacts).
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    home, storage = tmp_path_factory.mktemp("dev_home"), tmp_path_factory.mktemp("dev_storage")
    yield from start_dagster_dev(home, storage, {"OMNISAGE_WORLD": "tiny"})


def test_materialize_a_day_and_backfill_three_through_graphql(dagster_dev):
    # A backfill of three days of engagements: one run (the asset's single-run policy), which
    # the daemon launches and the IO manager splits into the three partitions.
    launched = dagster_dev.graphql(
        LAUNCH_BACKFILL,
        params={
            "partitionNames": BACKFILL_DAYS,
            "assetSelection": [{"path": ["engagements"]}],
            "runConfigData": IN_PROCESS,
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    # Meanwhile, the catalog, then the whole asset graph for one day.
    client = dagster_dev.client
    assert dagster_dev.wait_for_run(client.submit_job_execution("catalog_job", run_config=IN_PROCESS)) == "SUCCESS"
    run = client.submit_job_execution("daily_pipeline_job", run_config=FAST, tags={"dagster/partition": DAY})
    # A second run of the same day, submitted while the first trains, waits for it: the run
    # queue holds one run per partition (deploy/dagster.yaml).
    second = client.submit_job_execution("ingest_job", run_config=IN_PROCESS, tags={"dagster/partition": DAY})
    assert dagster_dev.wait_for_run(run) == "SUCCESS", dagster_dev.log.read_text()[-3000:]
    assert dagster_dev.wait_for_run(second) == "SUCCESS"
    first_run, second_run = (dagster_dev.graphql(RUN_TIMES, id=r)["runOrError"] for r in (run, second))
    assert first_run["endTime"] <= second_run["startTime"], (first_run, second_run)

    def backfill_done():
        backfill = dagster_dev.graphql(BACKFILL_STATUS, id=launched["backfillId"])["partitionBackfillOrError"]
        return backfill if backfill["status"] not in {"REQUESTED", "CANCELING", "FAILING"} else None

    backfill = dagster_dev.wait(backfill_done, "backfill of three days", timeout=300)
    assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, backfill
    assert [r["status"] for r in backfill["runs"]] == ["SUCCESS"]
    stored = dagster_dev.storage / "assets" / "engagements"
    assert {p.stem for p in stored.glob("*.parquet")} == {DAY, *BACKFILL_DAYS}
    assert {m["partition"] for m in dagster_dev.materializations("engagements")} == {DAY, *BACKFILL_DAYS}

    # The published embeddings, read from LanceDB the way a serving client does.
    reader = EmbeddingReader(dagster_dev.storage / "lancedb")
    assert reader.release["partition_date"] == DAY
    pins = reader.db.open_table(reader.release["tables"]["pins"])
    assert pins.count_rows() == TINY.n_pins
    pin = pins.search().limit(1).to_arrow()["id"][0].as_py()
    similar = reader.similar_pins(pin, k=5)
    assert similar.num_rows == 5 and pin not in similar["id"].to_pylist()


def _skip_greeting(page) -> None:
    """A first visit greets with a community sign-up dialog over the page; a user skips it."""
    skip = page.get_by_role("button", name="Skip", exact=True)
    try:
        skip.wait_for(timeout=5_000)
    except Exception:  # no dialog this time
        return
    skip.click()


def test_the_ui_shows_every_asset_and_launches_a_materialization(dagster_dev, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the UI test needs Debian's chromium (make test installs it)"
    from dagster_defs.definitions import build_definitions

    assets = sorted(k.to_user_string() for k in build_definitions().resolve_asset_graph().get_all_asset_keys())
    ARTIFACTS.mkdir(exist_ok=True)
    before = {m["runId"] for m in dagster_dev.materializations("boards")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        # Tall enough that the catalog's virtualised table renders every row.
        page = browser.new_page(viewport={"width": 1600, "height": 2400})
        page.goto(f"{dagster_dev.url}/asset-groups", wait_until="networkidle")
        _skip_greeting(page)
        page.screenshot(path=str(ARTIFACTS / "asset_graph.png"))
        page.goto(f"{dagster_dev.url}/assets", wait_until="networkidle")
        for asset in assets:
            page.get_by_text(asset, exact=True).first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "asset_catalog.png"), full_page=True)
        # Launch a materialization the way a user does: the asset's page, then Materialize.
        page.goto(f"{dagster_dev.url}/assets/boards", wait_until="networkidle")
        _skip_greeting(page)
        page.locator("button", has_text="Materialize").first.click()
        run_id = dagster_dev.wait(
            lambda: ({m["runId"] for m in dagster_dev.materializations("boards")} - before) or None,
            "the materialization launched from the UI",
            timeout=300,
        ).pop()
        page.goto(f"{dagster_dev.url}/runs/{run_id}", wait_until="networkidle")
        page.screenshot(path=str(ARTIFACTS / "ui_launched_run.png"))
        browser.close()
    assert dagster_dev.wait_for_run(run_id) == "SUCCESS"
    assert Path(ARTIFACTS / "asset_graph.png").stat().st_size > 10_000
