"""The clients: `Client` (sync) and `AsyncClient`, one method per route of the API."""

from types import TracebackType
from typing import Any, Dict, Mapping, Optional, Type

import httpx

from ._core import Methods, answer_of, request_of, split_sides

USER_AGENT = "sprayer-sdk-python/0.1.0"


class _Base(Methods):
    def __init__(
        self,
        base_url: str,
        key: Optional[str] = None,
        *,
        admin_url: Optional[str] = None,
        admin_token: Optional[str] = None,
    ) -> None:
        self._sides = split_sides(base_url, key, admin_url, admin_token)

    def _prepare(
        self,
        name: str,
        path: Optional[Mapping[str, str]],
        headers: Optional[Mapping[str, str]],
    ) -> "tuple[str, str, Dict[str, str]]":
        method, route, side = request_of(name, path or {})
        base, credential = self._sides[side]
        if credential is None:
            what = "an admin token" if side == "admin" else "an app key"
            raise ValueError(f"{name} needs {what}")
        all_headers = {"Authorization": f"Bearer {credential}", "User-Agent": USER_AGENT}
        all_headers.update(headers or {})
        return method, base + route, all_headers

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        return answer_of(response.status_code, response.text, response.headers)


class Client(_Base):
    """A synchronous client: `Client("http://127.0.0.1:8080", key)`; admin routes take
    `admin_url` and `admin_token`. Refusals raise `SprayerError` (its `field` names the input
    at fault)."""

    def __init__(
        self,
        base_url: str,
        key: Optional[str] = None,
        *,
        admin_url: Optional[str] = None,
        admin_token: Optional[str] = None,
        timeout: float = 30.0,
        http: Optional[httpx.Client] = None,
    ) -> None:
        super().__init__(base_url, key, admin_url=admin_url, admin_token=admin_token)
        self._http = http or httpx.Client(timeout=timeout)

    def _call(
        self,
        name: str,
        path: Optional[Mapping[str, str]] = None,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Any:
        method, url, all_headers = self._prepare(name, path, headers)
        response = self._http.request(method, url, json=json, params=params, headers=all_headers)
        return self._answer(response)

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()


class AsyncClient(_Base):
    """An asynchronous client with the same methods as `Client`, each awaited."""

    def __init__(
        self,
        base_url: str,
        key: Optional[str] = None,
        *,
        admin_url: Optional[str] = None,
        admin_token: Optional[str] = None,
        timeout: float = 30.0,
        http: Optional[httpx.AsyncClient] = None,
    ) -> None:
        super().__init__(base_url, key, admin_url=admin_url, admin_token=admin_token)
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def _call(  # type: ignore[override]
        self,
        name: str,
        path: Optional[Mapping[str, str]] = None,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Any:
        method, url, all_headers = self._prepare(name, path, headers)
        response = await self._http.request(method, url, json=json, params=params, headers=all_headers)
        return self._answer(response)

    async def aclose(self) -> None:
        """Closes the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(
        self,
        kind: Optional[Type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.aclose()
