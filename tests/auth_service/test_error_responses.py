"""Error responses the service builds itself: 405 and 422 on odd input."""

from __future__ import annotations

import httpx2


async def test_405_names_only_methods_the_path_serves(client: httpx2.AsyncClient) -> None:
    head = await client.head("/api/users/me")
    delete = await client.delete("/api/users/me")

    # HEAD is refused, so advertising it in Allow would contradict the response itself.
    assert head.status_code == delete.status_code == 405
    assert head.headers["allow"] == delete.headers["allow"] == "GET"
    assert delete.json() == {"detail": "Method Not Allowed"}
