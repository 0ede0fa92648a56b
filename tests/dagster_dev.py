"""A real ``dagster dev`` (webserver and daemon) on a temporary DAGSTER_HOME, driven through the
GraphQL API the UI itself calls."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from dagster_graphql import DagsterGraphQLClient

REPO = Path(__file__).resolve().parents[1]
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

LOCATION_STATUS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs(limit: 10) { runId status tags { key value } } }
  }
}"""
RUN_TIMES = """
query($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime } } }"""
ASSET_RUNS = """
query($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset { assetMaterializations(limit: 5) { runId partition } }
  }
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class DagsterDev:
    url: str
    port: int
    storage: Path
    log: Path

    def graphql(self, query: str, **variables: object) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    @property
    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=60)

    def wait(self, check, what: str, timeout: float = 600, every: float = 1.0):
        """Poll ``check()`` until it returns something truthy; fail naming ``what`` and the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := check():
                return result
            time.sleep(every)  # polling a live server: there is nothing to wait on but time
        raise TimeoutError(f"{what}: not done after {timeout:.0f} s; dagster dev log: {self.log}\n{self.log.read_text()[-3000:]}")

    def wait_for_run(self, run_id: str, timeout: float = 600) -> str:
        return self.wait(
            lambda: (s := self.client.get_run_status(run_id).value) in TERMINAL and s, f"run {run_id}", timeout
        )

    def materializations(self, asset: str) -> list[dict]:
        data = self.graphql(ASSET_RUNS, key={"path": [asset]})
        return data["assetOrError"].get("assetMaterializations") or []


def start_dagster_dev(home: Path, storage: Path, env: dict[str, str]) -> Iterator[DagsterDev]:
    """``dagster dev`` on a free port until the code location has loaded; stopped on exit."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    log = home / "dagster_dev.log"
    command = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, "DAGSTER_HOME": str(home), "OMNISAGE_HOME": str(storage), **env}
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    dev = DagsterDev(f"http://127.0.0.1:{port}", port, storage, log)
    try:

        def loaded() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                entries = dev.graphql(LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
            except requests.RequestException:
                return False
            return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)

        dev.wait(loaded, "dagster dev start-up", timeout=240)
        yield dev
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # webserver, daemon, code server and runs
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
