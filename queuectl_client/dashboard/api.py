"""The dashboard's JSON API, its event streams and its actions (see the module `app` for the routes)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import msgspec
from aiohttp import web

from .. import prometheus
from .. import protocol as p
from ..errors import RequestFailed
from ..page_messages import MAX_PAGE
from ..render import schedule_dict
from ..wire import STATES
from .auth import Handler
from .follow import STREAMS, Watchers, job_json, read_from
from .hub import CLOSE, Hub, sse
from .link import Link, Unreachable

log = logging.getLogger("queuectl.dashboard")

PING = 15.0
STATUS = {"invalid": 400, "not_found": 404}  # any other refusal: 409


class BadInput(Exception):
    """A request the dashboard refuses itself (400)."""


MAX_MESSAGE = 300  # characters of an error message (it may quote what was sent)

# What each field of a page request must be, said plainly (msgspec's own words name its schema).
LISTING_FIELDS = {"cursor": "not a cursor of this listing", "group": "not a group name",
                  "query": "a search is 1 to 4096 characters"}


def error(status: int, message: str) -> web.Response:
    line = message.splitlines()[0] if message else "error"
    if len(line) > MAX_MESSAGE:
        line = line[: MAX_MESSAGE - 1] + "…"
    return web.json_response({"error": line}, status=status)


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"{name} must be a whole number from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise BadInput(f"{name} must be a whole number from {lo} to {hi}")
    return value


class Api:
    def __init__(self, link: Link, hub: Hub) -> None:
        self.link = link
        self.hub = hub
        self.watchers = Watchers(link)
        self.open_streams: set[asyncio.Task[Any]] = set()

    async def ask(self, msg: p.Message) -> Any:
        return await self.link.request(msg)

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Daemon refusals, an unreachable daemon and bad input as one line of JSON."""
        try:
            return await handler(request)
        except BadInput as e:
            return error(400, str(e))
        except RequestFailed as e:
            return error(STATUS.get(e.code, 409), e.message)
        except Unreachable as e:
            return error(502, f"daemon unreachable: {e}")
        except web.HTTPException:
            raise
        except Exception as e:  # a fault of the dashboard itself: logged, and one line for the page
            log.exception("%s %s", request.method, request.path)
            return error(500, f"the dashboard could not answer: {type(e).__name__}")

    # -- reads ------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        view = await self.hub.fresh()
        if view is None:
            return error(502, self.hub.unreachable or "daemon unreachable")
        return web.json_response(view)

    async def jobs(self, request: web.Request, state: str | None = None) -> web.Response:
        q = request.query
        fields: dict[str, Any] = {"limit": _int(request, "limit", 50, 1, MAX_PAGE)}
        state = state or q.get("state") or None
        if state is not None and state not in STATES:
            raise BadInput(f"state must be one of {', '.join(STATES)}")
        for name, key in (("state", state), ("group", q.get("group") or None), ("query", q.get("q") or None),
                          ("cursor", q.get("cursor") or None)):
            if key is not None:
                fields[name] = key
        try:
            req = msgspec.convert(fields, p.Page)
        except msgspec.ValidationError as e:
            field = str(e).rpartition("$.")[2].strip("`")
            raise BadInput(f"{field}: {LISTING_FIELDS.get(field, 'not valid here')}") from None
        reply: p.PageReply = await self.ask(req)
        return web.json_response({"jobs": [job_json(j) for j in reply.jobs], "next": reply.next,
                                  "scanned": reply.scanned, "total": reply.total})

    async def dlq(self, request: web.Request) -> web.Response:
        return await self.jobs(request, "dead")

    async def job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        reply: p.JobReply = await self.ask(p.Show(job_id))
        why = None
        if reply.job.state in ("pending", "failed"):
            try:
                why = (await self.ask(p.Why(job_id))).text
            except RequestFailed:
                why = None
        return web.json_response({"job": job_json(reply.job), "why": why})

    async def output(self, request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        stream = request.query.get("stream", "stdout")
        if stream not in STREAMS:
            raise BadInput("stream must be stdout or stderr")
        offset = _int(request, "offset", 0, 0, 1 << 62)
        reply: p.LogsReply = await self.ask(p.Logs(job_id))
        data, size = await read_from(reply.stdout if stream == "stdout" else reply.stderr, offset, True)
        end = min(offset, size) + len(data)
        return web.json_response({"data": data.decode(errors="replace"), "offset": end, "size": size,
                                  "more": end < size})

    async def schedules(self, request: web.Request) -> web.Response:
        reply: p.SchedulesReply = await self.ask(p.ScheduleList())
        return web.json_response({"schedules": [schedule_dict(msgspec.to_builtins(s)) for s in reply.schedules]})

    async def groups(self, request: web.Request) -> web.Response:
        reply: p.GroupsReply = await self.ask(p.GroupList())
        return web.json_response({"groups": msgspec.to_builtins(reply.groups)})

    async def metrics(self, request: web.Request) -> web.Response:
        reply = await self.ask(p.Metrics())
        return web.Response(body=prometheus.render(reply).encode(), headers={"Content-Type": prometheus.CONTENT_TYPE})

    # -- live -------------------------------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        return resp

    async def events(self, request: web.Request) -> web.StreamResponse:
        resp = await self._stream(request)
        stream = self.hub.join(request.query.get("slow") == "1")
        try:
            while True:
                try:
                    item = await asyncio.wait_for(stream.queue.get(), PING)
                except TimeoutError:
                    item = b": ping\n\n"
                if item == CLOSE:
                    break
                await resp.write(item)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.hub.leave(stream)
        return resp

    async def job_events(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["id"]
        offsets = {name: _int(request, name, 0, 0, 1 << 62) for name in STREAMS}
        await self.ask(p.Show(job_id))  # an unknown job: 404 before the stream starts
        resp = await self._stream(request)
        w = self.watchers.join(job_id)
        sent_job: dict[str, Any] | None = None
        try:
            while True:
                if w.job is not None and w.job != sent_job:
                    sent_job = w.job
                    await resp.write(sse("job", w.job))
                drained = True
                for name in STREAMS:
                    path = w.paths.get(name)
                    if path is None:
                        continue
                    data, size = await read_from(path, offsets[name], not w.final)
                    if size < offsets[name]:  # a new run started its output over
                        offsets[name] = 0
                        data, size = await read_from(path, 0, not w.final)
                    if data:
                        offsets[name] = min(offsets[name], size) + len(data)
                        await resp.write(sse("output", {"stream": name, "data": data.decode(errors="replace"),
                                                        "offset": offsets[name]}))
                    if offsets[name] < size:
                        drained = False
                if w.final and drained and (w.job is not None or w.gone):
                    await resp.write(b"event: end\ndata: {}\n\n")
                    break
                if not drained:
                    continue
                async with w.changed:
                    try:
                        await asyncio.wait_for(w.changed.wait(), PING)
                    except TimeoutError:
                        await resp.write(b": ping\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watchers.leave(w)
        return resp

    # -- actions ----------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BadInput("the body is not JSON (or is nested too deeply)") from None
        if not isinstance(body, dict):
            raise BadInput("the body must be a JSON object")
        return body

    async def job_action(self, request: web.Request) -> web.Response:
        job_id, action = request.match_info["id"], request.match_info["action"]
        await self._body(request)
        if action == "cancel":
            changed: p.Changed = await self.ask(p.Cancel(ids=[job_id]))
            message = f"cancelled {job_id}" if changed.count else f"{job_id} was not cancelled"
        elif action == "retry":
            changed = await self.ask(p.Retry(ids=[job_id]))
            message = f"retrying {job_id}" if changed.count else f"{job_id} was not retried"
        elif action == "rerun":
            enqueued: p.Enqueued = await self.ask(p.Rerun(job_id))
            new = enqueued.ids[0] if enqueued.ids else ""
            return web.json_response({"ok": True, "message": f"enqueued a copy of {job_id} as {new}", "id": new})
        elif action == "delete":
            await self.ask(p.Delete(job_id))
            message = f"deleted {job_id}"
        else:
            raise web.HTTPNotFound()
        return web.json_response({"ok": True, "message": message})

    async def dlq_retry(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        ids, everything = body.get("ids", []), body.get("all", False)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not isinstance(everything, bool):
            raise BadInput('give {"ids": ["ID", ...]} or {"all": true}')
        if bool(ids) == everything:
            raise BadInput('give {"ids": ["ID", ...]} or {"all": true}, one of them')
        reply: p.Retried = await self.ask(p.DlqRetry(ids, everything))
        return web.json_response({"ok": True, "message": f"{len(reply.ids)} job(s) moved back to pending"})

    async def group_action(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        await self._body(request)
        reply = await self.ask(p.Pause(groups=[name], resume=action == "resume"))
        assert isinstance(reply, p.Message)
        return web.json_response({"ok": True, "message": f"{'resumed' if action == 'resume' else 'paused'} {name}"})

    async def pool(self, request: web.Request) -> web.Response:
        size = (await self._body(request)).get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 1024:
            raise BadInput("size must be a whole number from 0 to 1024")
        await self.ask(p.WorkerStart(size))
        return web.json_response({"ok": True, "message": f"the pool has {size} worker(s)"})
