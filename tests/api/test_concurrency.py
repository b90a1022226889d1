"""Racing writes over real HTTP (a threaded server on loopback): the database serialises them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

HDR = {"Content-Type": "application/fhir+json"}


def _race(n: int, fn: Any) -> list[Any]:
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def test_two_updates_with_the_same_if_match(base_url: str) -> None:
    first = requests.put(
        f"{base_url}/Patient/race", json={"resourceType": "Patient", "id": "race"}, headers=HDR, timeout=30
    )
    assert first.status_code == 201
    for attempt in range(5):
        version = requests.get(f"{base_url}/Patient/race", timeout=30).json()["meta"]["versionId"]

        def update(i: int, attempt: int = attempt, version: str = version) -> int:
            body = {
                "resourceType": "Patient",
                "id": "race",
                "gender": ["male", "female"][i],
                "birthDate": f"200{attempt}-01-01",
            }
            headers = {**HDR, "If-Match": f'W/"{version}"'}
            return requests.put(
                f"{base_url}/Patient/race", json=body, headers=headers, timeout=30
            ).status_code

        assert sorted(_race(2, update)) == [200, 412]
    hist = requests.get(f"{base_url}/Patient/race/_history", timeout=30).json()
    assert hist["total"] == 6


def test_twenty_conditional_creates_leave_one_resource(base_url: str) -> None:
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:race", "value": "42"}]}
    statuses = _race(
        20,
        lambda i: (
            requests.post(
                f"{base_url}/Patient",
                json=body,
                headers={**HDR, "If-None-Exist": "identifier=urn:race|42"},
                timeout=60,
            ).status_code
        ),
    )
    assert sorted(statuses) == [200] * 19 + [201]
    found = requests.get(f"{base_url}/Patient?identifier=urn:race|42", timeout=30).json()
    assert found["total"] == 1


def test_racing_update_as_create_of_one_id(base_url: str) -> None:
    statuses = _race(
        8,
        lambda i: (
            requests.put(
                f"{base_url}/Patient/same",
                json={"resourceType": "Patient", "id": "same", "birthDate": f"19{10 + i}-01-01"},
                headers=HDR,
                timeout=60,
            ).status_code
        ),
    )
    assert statuses.count(201) == 1 and statuses.count(200) == 7
    assert requests.get(f"{base_url}/Patient/same/_history", timeout=30).json()["total"] == 8
