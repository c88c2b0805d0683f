"""Key checks and task reads made at the same moment are answered together on PostgreSQL
(one statement for many): each request must still get its own answer."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from starlette.testclient import TestClient

from tests.conftest import act, create, key_for


def test_requests_made_together_each_get_their_own_answer(client: TestClient) -> None:
    ids = [create(client, task=f"Summarise report {n}", priority=["low", "high"][n % 2])["taskId"]
           for n in range(12)]
    for task_id in ids[::3]:
        act(client, task_id, "assign", {"agentId": "agent-7"})
    expected = {task_id: client.get(f"/agents/tasks/{task_id}", headers={"Host": "first.test"}).json()["data"]
                for task_id in ids}
    other_tenant = key_for(client, "admin", tenant="elsewhere")
    unknown = {"Authorization": "Bearer no-such-key-0123456789abcdefghijklmnop"}

    def read(n: int) -> tuple[int, str, int, dict | None]:
        task_id = ids[n % len(ids)]
        # A host of its own: links name it, so no read is answered from the cache of presented tasks.
        headers = {**[{}, other_tenant, unknown][n % 3], "Host": f"h{n}.test"}
        response = client.get(f"/agents/tasks/{task_id}", headers=headers)
        data = json.loads(response.text.replace(f"h{n}.test", "first.test")).get("data")
        return n, task_id, response.status_code, data

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(read, range(144)))
    for n, task_id, status, data in results:
        if n % 3 == 0:
            assert (status, data) == (200, expected[task_id])
        elif n % 3 == 1:
            assert status == 404  # another tenant's key: not its task
        else:
            assert status == 401
