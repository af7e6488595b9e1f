"""A fake Misskey instance on 127.0.0.1: ``POST /api/notes/search-by-tag``.

Answers the way Misskey's endpoint does: a JSON array of Notes; ``limit``
1-100 (default 10); ``untilId`` pages back newest-first; ``sinceId`` alone
gives the notes right after it **oldest first**; both give newest first; the
optional token travels as ``"i"`` in the body. Errors are Misskey-shaped
(``{"error": {"message", "code", "id", "kind"}}``): 400 ``INVALID_PARAM``, 401
``CREDENTIAL_REQUIRED`` when a token is required, 429 ``RATE_LIMIT_EXCEEDED``
with ``Retry-After``. Faults come from the shared switchboard.

Notes are federated to one or both fake instances ("a", "b"): a remote note
has the same ``uri`` with a different local ``id``; some notes are local to
"a" (no ``uri``). Some notes are also *renoted* (a pure renote wrapping the
note, with its own id), which must not count twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.seeds import Expected, Seed, SeedList
from tests.fakes.server import FakeBase, RateWindow, RunningServer, admin_routes, apply_fault, iso

__all__ = ["DELETE", "MisskeyFake", "MisskeyWorld", "aid", "start_misskey_fake"]

DELETE = object()
ORIGIN = "misskey-origin.example"
_EPOCH_2000 = 946_684_800_000
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _b36(value: int, width: int) -> str:
    out = ""
    while value:
        value, digit = divmod(value, 36)
        out = _B36[digit] + out
    return out.rjust(width, "0")[-width:]


def aid(created: datetime, seq: int) -> str:
    """A Misskey ``aid``: base36 milliseconds since 2000 (8) + a counter (2)."""
    return _b36(int(created.timestamp() * 1000) - _EPOCH_2000, 8) + _b36(seq, 2)


class MisskeyWorld:
    """The notes both fake instances serve."""

    def __init__(self, seed: int = 3, count: int = 60, hours: float = 2.0) -> None:
        self.seeds = SeedList(seed, 0, hours=hours)
        self._seq = {"a": 0, "b": 0}
        # (instance, wrapper id, created_at, renoted seed)
        self.renotes: list[tuple[str, str, datetime, Seed]] = []
        rng = self.seeds.rng
        for i in range(count):
            created = self.seeds.start + timedelta(seconds=hours * 3600 * (i + rng.random()) /
                                                   count)
            self.add(created_at=created.replace(microsecond=0))

    def _id(self, instance: str, created: datetime) -> str:
        self._seq[instance] += 1
        return aid(created, self._seq[instance] * 2 + (instance == "b"))

    def add(self, tags: tuple[str, ...] | None = None, *, instances: tuple[str, ...] | None = None,
            created_at: datetime | None = None, renoted: bool | None = None) -> Seed:
        with self.seeds.lock:
            rng = self.seeds.rng
            if instances is None:
                instances = rng.choices([("a",), ("b",), ("a", "b")], weights=[4, 3, 3])[0]
            local = instances == ("a",) and rng.random() < 0.4
            seed = self.seeds.add(tags, created_at=created_at, instances=instances, local=local)
            seed.hashed = True  # Misskey text carries "#tag"; ``tags`` holds them too
            seed.extra["ids"] = {i: self._id(i, seed.created_at) for i in instances}
            if renoted if renoted is not None else rng.random() < 0.2:
                when = seed.created_at + timedelta(seconds=30)
                for instance in instances:
                    self.renotes.append((instance, self._id(instance, when), when, seed))
            return seed

    def on(self, instance: str) -> list[Seed]:
        return [s for s in self.seeds.all() if instance in s.extra["instances"]]  # type: ignore[operator]

    def key(self, seed: Seed, base_a: str) -> str:
        if seed.extra["local"]:
            return f"{base_a}/notes/{seed.extra['ids']['a']}"  # type: ignore[index]
        return f"https://{ORIGIN}/notes/{seed.n:08d}"

    def expected(self, base_a: str) -> Expected:
        return {("misskey", self.key(s, base_a)): (s.created_at, s.tags) for s in self.seeds.all()}


class MisskeyFake(FakeBase):
    def __init__(self, world: MisskeyWorld, instance: str = "a", *,
                 token: str | None = None) -> None:
        super().__init__()
        self.world = world
        self.instance = instance
        self.token = token
        self.base_a = ""  # URL of instance "a" (local notes of "a" are keyed by it)
        self.corruptions: dict[int, dict[str, Any]] = {}
        self.server: RunningServer | None = None
        self.app = Starlette(routes=[
            Route("/api/notes/search-by-tag", self.search, methods=["POST"]),
            *admin_routes(self, self._admin_add, self._admin_expected),
        ])

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def set_rate_limit(self, limit: int, window: float) -> None:
        self.rate = RateWindow(limit, window)

    def corrupt(self, seed: Seed, field: str, value: Any) -> None:
        self.corruptions.setdefault(seed.n, {})[field] = value

    def note_id(self, seed: Seed) -> str:
        return seed.extra["ids"][self.instance]  # type: ignore[index,no-any-return]

    # -- payloads ---------------------------------------------------------------------

    def note(self, seed: Seed) -> dict[str, Any]:
        local = bool(seed.extra["local"]) and self.instance == "a"
        nid = self.note_id(seed)
        note: dict[str, Any] = {
            "id": nid, "createdAt": iso(seed.created_at), "userId": f"u{seed.author}",
            "user": {"id": f"u{seed.author}", "username": seed.author,
                     "host": None if local else ORIGIN, "name": seed.author.title(),
                     "avatarUrl": None, "isBot": False},
            "text": seed.text, "cw": "cw: violence" if seed.n % 11 == 0 else None,
            "visibility": "public", "localOnly": False, "renoteCount": len(self.world.renotes),
            "repliesCount": seed.n % 3, "reactions": {"❤": seed.n % 4}, "reactionEmojis": {},
            "emojis": {}, "fileIds": [], "files": [], "replyId": None, "renoteId": None,
            "tags": [t.lower() for t in seed.tags],
        }
        if not local:
            note["uri"] = f"https://{ORIGIN}/notes/{seed.n:08d}"
            note["url"] = note["uri"]
        for field, value in self.corruptions.get(seed.n, {}).items():
            if value is DELETE:
                note.pop(field, None)
            else:
                note[field] = value
        return note

    def renote(self, wrapper_id: str, created: datetime, seed: Seed) -> dict[str, Any]:
        inner = self.note(seed)
        return {"id": wrapper_id, "createdAt": iso(created), "userId": "urenoter",
                "user": {"id": "urenoter", "username": "renoter", "host": None},
                "text": None, "cw": None, "visibility": "public", "fileIds": [], "files": [],
                "replyId": None, "renoteId": inner["id"], "renote": inner, "tags": [],
                "renoteCount": 0, "repliesCount": 0, "reactions": {}}

    def _error(self, status: int, code: str, message: str,
               headers: dict[str, str] | None = None) -> Response:
        return JSONResponse({"error": {"message": message, "code": code,
                                       "id": "00000000-0000-0000-0000-000000000000",
                                       "kind": "client"}}, status_code=status, headers=headers)

    def _limited(self, seconds: float) -> Response:
        return self._error(429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded. Please try again "
                           "later.", {"Retry-After": str(max(1, round(seconds)))})

    # -- handler ----------------------------------------------------------------------

    async def search(self, request: Request) -> Response:
        self.record(request)
        raw = await request.body()
        fault = self.faults.take()
        if fault is not None:
            return await apply_fault(fault, lambda: self._search(raw), self._limited)
        return self._search(raw)

    def _search(self, raw: bytes) -> Response:
        if self.rate is not None:
            allowed, _, reset = self.rate.hit()
            if not allowed:
                return self._limited(reset - datetime.now(UTC).timestamp())
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._error(400, "INVALID_PARAM", "Invalid param.")
        if not isinstance(body, dict) or not isinstance(body.get("tag"), str):
            return self._error(400, "INVALID_PARAM", "Invalid param.")
        if self.token is not None and body.get("i") != self.token:
            return self._error(401, "CREDENTIAL_REQUIRED", "Credential required.")
        limit = body.get("limit", 10)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            return self._error(400, "INVALID_PARAM", "Invalid param.")
        tag = body["tag"].lower()
        with self.world.seeds.lock:
            rows = [(self.note_id(s), None, s) for s in self.world.on(self.instance)
                    if tag in s.tags]
            rows += [(wid, when, s) for inst, wid, when, s in self.world.renotes
                     if inst == self.instance and tag in s.tags]
        rows.sort(key=lambda r: r[0])
        since, until = body.get("sinceId"), body.get("untilId")
        if isinstance(since, str):
            rows = [r for r in rows if r[0] > since]
        if isinstance(until, str):
            rows = [r for r in rows if r[0] < until]
        if isinstance(since, str) and not isinstance(until, str):
            page = rows[:limit]  # ascending: the notes right after sinceId
        else:
            page = list(reversed(rows[-limit:]))
        out = [self.note(s) if when is None else self.renote(wid, when, s)
               for wid, when, s in page]
        return JSONResponse(out)

    # -- admin ------------------------------------------------------------------------

    def _admin_add(self, data: dict[str, Any]) -> dict[str, Any]:
        seed = self.world.add(tuple(data.get("tags") or ["metoo"]),
                              instances=tuple(data.get("instances") or [self.instance]))
        return {"n": seed.n, "ids": seed.extra["ids"]}

    def _admin_expected(self) -> dict[str, Any]:
        expected = self.world.expected(self.base_a or self.url)
        return {"posts": len(expected)}


def start_misskey_fake(world: MisskeyWorld, instance: str = "a", *, token: str | None = None,
                       port: int = 0, base_a: str = "") -> MisskeyFake:
    from tests.fakes.server import run_app

    fake = MisskeyFake(world, instance, token=token)
    fake.server = run_app(fake.app, f"misskey-{instance}", port)
    fake.base_a = base_a or (fake.url if instance == "a" else "")
    return fake
