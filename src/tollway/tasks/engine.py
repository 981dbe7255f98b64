"""The task engine: runs the images and videos callers asked for as tasks, in every process.

**Submission** (``submit``): the call is admitted like any (``ChatPipeline.hold``: identity, the
model's surface, authorization, limits, the credit hold), the task is stored already leased to
this process, and this process starts it; the hold passes from the call to the task.

**Running**: an image task calls the model's provider (``ImageMaker``) through the pipeline's
attempts (pool, retries, fallbacks); a video task starts the upstream's job (``VideoMaker``),
stores its id, then polls it with backoff until it ends and downloads the video. Results go to
the blob store (``store.blobs``), named after the task. Each run is a request-log row of its own
(``<task id>.<attempt>``, dialect ``task``) and settles like a call: charged on success (per
image, per second of video, per token, as the model is priced), refunded on failure or cancel.

**Durability**: while it runs a task, a process renews its lease every third of
``TOLLWAY_TASK_LEASE``. A process that dies stops renewing; when the lease has run out another
process (or this one, restarted) takes the task over (``TaskRepository.claim``), holds the
task's credits again (its hold died with the first process: a memory wallet's with the process,
a Redis one's lease with its renewals), and goes on: a video whose upstream job was started is
polled again, not started twice; an image is asked for again. A task taken over more than
``MAX_ATTEMPTS`` times fails. Nothing is lost and no hold leaks: a hold only lives in the process
that runs its task.

**Cancel** (``cancel``): the row is marked cancelled at once; the process running it (this one,
or the one holding the lease, which sees the status on its next look) stops it and releases its
hold. **Retention**: finished tasks and their blobs are deleted ``TOLLWAY_TASK_RETENTION_DAYS``
after they finish.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import time
from typing import Any, Final

import msgspec
from starlette.requests import Request

from tollway.auth.keys import ADMIN, Identity
from tollway.billing.admission import Bound
from tollway.core.catalog import Credential
from tollway.core.errors import (
    InternalError,
    InvalidRequest,
    NotFound,
    ServerShuttingDown,
    TollwayError,
    UpstreamError,
    UpstreamTimeout,
)
from tollway.core.media import ImageRequest, Images, VideoJob, VideoRequest
from tollway.providers.base import ChatProvider, ImageMaker, VideoMaker
from tollway.routing.call import Call
from tollway.routing.catalog import Route
from tollway.routing.gateway import Gateway
from tollway.routing.pipeline import ChatPipeline
from tollway.store.blobs import BlobSigner, BlobStore, extension
from tollway.store.tasks import CANCELLED, FAILED, FINAL, PENDING, RUNNING, SUCCEEDED, Task, TaskRepository

log = logging.getLogger("tollway.tasks")

IMAGE: Final = "image"
VIDEO: Final = "video"
MAX_ATTEMPTS: Final = 3  # times a task may be taken on (a process died under it) before it fails
POLL_ERRORS: Final = 5  # retryable upstream errors in a row while polling a video before the task fails
PURGE_EVERY: Final = 300.0  # seconds between looks for expired tasks
COUNT_EVERY: Final = 5.0  # seconds between counts of the queue (metrics)
SYNC_BLOBS: Final = "req_"  # blobs of synchronous requests (images asked for as URLs): their request id


class TaskCancelled(TollwayError):
    status = 499
    default_code = "cancelled"


def new_id(kind: str) -> str:
    return f"{'video' if kind == VIDEO else 'task'}_{secrets.token_hex(12)}"


class TaskEngine:
    def __init__(self, gateway: Gateway, pipeline: ChatPipeline, repo: TaskRepository, blobs: BlobStore,
                 signer: BlobSigner, *, workers: int = 4, lease: float = 30.0, timeout: float = 1800.0,
                 retention: float = 7 * 86400.0, look_every: float = 1.0, poll_min: float = 2.0,
                 poll_max: float = 30.0) -> None:
        self.gw = gateway
        self.pipeline = pipeline
        self.repo = repo
        self.blobs = blobs
        self.signer = signer
        self.workers = workers
        self.lease = lease
        self.timeout = timeout
        self.retention = retention
        self.look_every = look_every
        self.poll_min, self.poll_max = poll_min, poll_max
        self.node = f"{secrets.token_hex(6)}"
        self._running: dict[str, asyncio.Task[None]] = {}
        self._tickets: dict[str, Any] = {}  # task id -> the Ticket its submission held
        self._slots = asyncio.Semaphore(max(1, workers))
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_renew = 0.0
        self._next_purge = 0.0
        self._next_count = 0.0
        self.queue: tuple[dict[str, int], float | None] = ({}, None)  # tasks by status; oldest pending's time

    @property
    def running(self) -> dict[str, asyncio.Task[None]]:
        """The tasks this process runs now."""
        return self._running

    # urls ------------------------------------------------------------------------------------

    def url(self, request: Request, name: str) -> str:
        """An expiring signed URL of blob ``name`` on this gateway (as the caller reached it)."""
        path, _ = self.signer.path(name)
        return str(request.base_url).rstrip("/") + path

    # submission ------------------------------------------------------------------------------

    async def submit(self, request: Request, call: Call, *, kind: str, shape: str, model: str, capability: str,
                     payload: dict[str, Any], bound: Bound) -> Task:
        """Admit and store a task, and start it here; the submitting call ends without a charge
        (the task's own run is charged)."""
        await self.pipeline.hold(request, call, model, capability, bound)
        ticket, call.ticket = call.ticket, None
        identity = call.identity or ADMIN
        now = time.time()
        task = Task(id=new_id(kind), kind=kind, shape=shape, owner=identity.owner, model=model, status=PENDING,
                    request=payload, key_id=identity.key_id,
                    studio_id=identity.key.studio_id if identity.key is not None else None,
                    hold=ticket.hold.amount if ticket is not None and ticket.hold is not None else 0,
                    attempts=1, lease_owner=self.node, lease_until=now + self.lease, created_at=now, updated_at=now)
        try:
            await self.repo.create(task)
        except BaseException:
            if ticket is not None and self.gw.billing is not None:
                self.gw.billing.settle(ticket, None, None, call.row.id)
            raise
        if ticket is not None:
            self._tickets[task.id] = ticket
        self._start(task)
        return task

    # cancel ----------------------------------------------------------------------------------

    async def cancel(self, task_id: str, owner: str | None) -> Task:
        task = await self.repo.cancel(task_id, owner)
        if task is None:
            raise NotFound(f"No task with id '{task_id}'.", code="task_not_found")
        running = self._running.get(task_id)
        if running is not None and task.status == CANCELLED:
            running.cancel()
        return task

    # running ---------------------------------------------------------------------------------

    def _start(self, task: Task) -> None:
        runner = asyncio.create_task(self._run(task), name=f"task {task.id}")
        self._running[task.id] = runner
        runner.add_done_callback(lambda _: self._running.pop(task.id, None))

    def _identity(self, task: Task) -> Identity:
        if task.key_id is None:
            return ADMIN
        key = self.gw.auth.by_id(task.key_id)
        if key is None:
            raise InvalidRequest("The key that asked for this task is gone (revoked or deleted).",
                                 code="invalid_api_key")
        return Identity(key=key)

    async def _run(self, task: Task) -> None:
        ticket = self._tickets.pop(task.id, None)
        async with self._slots:
            call = self.gw.begin(f"{task.id}.{task.attempts}", f"/tasks/{task.kind}", "task")
            call.row.model = task.model
            try:
                try:
                    identity = self._identity(task)
                    call.identify(identity)
                    if task.attempts > MAX_ATTEMPTS:
                        raise InternalError(f"The task was interrupted {task.attempts - 1} times (its process "
                                            "stopped); it is given up.", code="task_interrupted")
                    billing = self.gw.billing
                    if ticket is None and task.hold and identity.key is not None and billing is not None:
                        ticket = await billing.rehold(identity.key, task.hold)
                    call.ticket, ticket = ticket, None
                    if not await self.repo.update(task.id, self.node, status=RUNNING):
                        raise TaskCancelled("The task was cancelled.")
                    started = task.created_at or time.time()
                    async with asyncio.timeout(max(1.0, started + self.timeout - time.time())):
                        result = await (self._image(task, call) if task.kind == IMAGE else self._video(task, call))
                except TimeoutError:
                    raise UpstreamTimeout(f"The task did not finish within {self.timeout:g} s.",
                                          provider=call.row.provider or "upstream") from None
            except asyncio.CancelledError:
                why: TollwayError = (ServerShuttingDown("The server stopped while the task ran; it is resumed.")
                                     if self._stopping else TaskCancelled("The task was cancelled."))
                call.finish(why.http_status, why)  # nothing delivered: the hold is released
                await self._forget(task)
                raise
            except TollwayError as err:
                call.finish(err.http_status, err)
                await self._fail(task, err)
                return
            except Exception:
                log.exception("task %s failed", task.id)
                internal = InternalError("The gateway failed while running this task.")
                call.finish(500, internal)
                await self._fail(task, internal)
                return
            finally:
                if ticket is not None and self.gw.billing is not None:  # held, never handed to the call
                    self.gw.billing.settle(ticket, None, None, call.row.id)
            now = time.time()
            if not await self.repo.update(task.id, self.node, status=SUCCEEDED, result=result, progress=100,
                                          finished_at=now, expires_at=now + self.retention,
                                          cost_micro=0, error_code=None, error=None):
                call.finish(499, TaskCancelled("The task was cancelled before it finished."))  # refunded
                await self._drop_blobs(result)
                return
            call.finish(200)
            await self.repo.set_cost(task.id, call.row.cost_micro)

    async def _fail(self, task: Task, err: TollwayError) -> None:
        now = time.time()
        with contextlib.suppress(Exception):
            await self.repo.update(task.id, self.node, status=FAILED, error_code=err.code, error=err.message[:2000],
                                   finished_at=now, expires_at=now + self.retention)

    async def _forget(self, task: Task) -> None:
        """A run stopped here (cancelled, or the server stopping): its lease given back at once,
        so that another process may take a live task over without waiting."""
        if self._stopping:
            with contextlib.suppress(Exception):
                await self.repo.update(task.id, self.node, lease_until=0.0)

    async def _drop_blobs(self, result: dict[str, Any]) -> None:
        for asset in result.get("assets") or ():
            with contextlib.suppress(Exception):
                await self.blobs.delete(asset["blob"])

    # images ----------------------------------------------------------------------------------

    async def _image(self, task: Task, call: Call) -> dict[str, Any]:
        req = msgspec.convert(task.request["image"], ImageRequest)

        async def work(route: Route, provider: ChatProvider, credential: Credential) -> Images:
            if not isinstance(provider, ImageMaker):
                raise InvalidRequest(f"Model '{route.model.id}' cannot make images: its provider '{route.provider}' "
                                     "has no image API.", code="model_not_supported")
            return await provider.make_images(req, upstream_model=route.model.upstream_id, credential=credential)

        result = await self.pipeline.attempts(call, task.model, work)
        call.release()
        if result.usage is not None:
            call.usage(result.usage)
        call.made(count=len(result.images))
        assets = []
        for i, image in enumerate(result.images):
            name = f"{task.id}-{i}.{extension(image.media_type)}"
            await self.blobs.put(name, image.data)
            assets.append({"blob": name, "media_type": image.media_type, "bytes": len(image.data),
                           "revised_prompt": image.revised_prompt})
        return {"assets": assets, "usage": _usage(result.usage)}

    # videos ----------------------------------------------------------------------------------

    async def _video(self, task: Task, call: Call) -> dict[str, Any]:
        spec = dict(task.request["video"])
        if spec.get("reference") is not None:
            spec["reference"] = base64.b64decode(spec["reference"])
        req = msgspec.convert(spec, VideoRequest)
        topo = self.gw.topology
        if task.provider_task_id is None:
            async def start(route: Route, provider: ChatProvider,
                            credential: Credential) -> tuple[Route, Credential, VideoJob]:
                if not isinstance(provider, VideoMaker):
                    raise InvalidRequest(f"Model '{route.model.id}' cannot make videos: its provider "
                                         f"'{route.provider}' has no video API.", code="model_not_supported")
                job = await provider.start_video(req, upstream_model=route.model.upstream_id, credential=credential)
                return route, credential, job

            route, credential, job = await self.pipeline.attempts(call, task.model, start)
            call.release()  # a long job holds no credential slot while it is polled
            task.provider, task.credential, task.provider_task_id = route.provider, credential.id, job.id
            if not await self.repo.update(task.id, self.node, provider=route.provider, credential=credential.id,
                                          provider_task_id=job.id, progress=job.progress):
                raise TaskCancelled("The task was cancelled.")
        else:  # taken over: the upstream's job goes on, polled with the credential that started it
            route = topo.catalog.resolve(task.model)
            pool = topo.pools.get(task.provider or route.provider)
            found = next((c for c in pool.credentials if c.id == task.credential), None) if pool else None
            if found is None:
                raise UpstreamError(f"The credential that started this video ('{task.credential}') is gone.",
                                    provider=task.provider or route.provider)
            credential = found
            call.serving(route, credential)
            call.served = route.model
        provider = topo.providers[route.provider]
        assert isinstance(provider, VideoMaker)
        upstream = route.model.upstream_id
        job_id = task.provider_task_id
        delay, errors, progress = self.poll_min, 0, task.progress
        while True:
            await asyncio.sleep(delay)
            delay = min(self.poll_max, delay * 1.5)
            try:
                job = await provider.poll_video(job_id, upstream_model=upstream, credential=credential)
            except UpstreamError as err:
                errors += 1
                if not err.retryable or errors >= POLL_ERRORS:
                    raise
                continue
            errors = 0
            if job.status == "completed":
                break
            if job.status == "failed":
                raise UpstreamError(f"The upstream could not make the video: {job.error or 'no reason given'}",
                                    provider=route.provider, code="generation_failed")
            if job.progress is not None and job.progress != progress:
                progress = job.progress
                await self.repo.update(task.id, self.node, progress=progress)
        data, media_type = await provider.video_content(job_id, upstream_model=upstream, credential=credential)
        if not data:
            raise UpstreamError("The upstream's finished video is empty.", provider=route.provider)
        name = f"{task.id}-0.{extension(media_type)}"
        await self.blobs.put(name, data)
        call.made(units=req.seconds)
        return {"assets": [{"blob": name, "media_type": media_type, "bytes": len(data)}], "seconds": req.seconds}

    # the loop: leases, cancellations, take-overs, retention ------------------------------------

    def start(self) -> None:
        if self._loop_task is None and self.workers > 0:
            self._loop_task = asyncio.create_task(self._loop(), name="task engine")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.look_every)
            try:
                await self.look()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("task engine: %s: %s", type(exc).__name__, exc)

    async def look(self) -> None:
        """One turn: renew this process's leases, stop the tasks cancelled or taken elsewhere,
        take over the tasks whose lease ran out, purge the expired."""
        now = time.time()
        if now >= self._next_renew:
            await self.repo.renew(self.node, now + self.lease)
            self._next_renew = now + self.lease / 3
        if self._running:
            for task_id, (status, holder) in (await self.repo.statuses(list(self._running))).items():
                if status in FINAL or holder != self.node:
                    runner = self._running.get(task_id)
                    if runner is not None and status != SUCCEEDED:
                        runner.cancel()
        free = self.workers - len(self._running)
        if free > 0 and not self._stopping:
            for task in await self.repo.claim(self.node, now, now + self.lease, free):
                log.info("task %s taken over (attempt %d)", task.id, task.attempts)
                self._start(task)
        if now >= self._next_count:  # for the metrics: the queue as the database has it
            self._next_count = now + COUNT_EVERY
            self.queue = (await self.repo.counts(), await self.repo.oldest_pending())
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY
            await self.purge(now)

    async def purge(self, now: float | None = None) -> int:
        """Expired tasks and their blobs, and the images a synchronous request asked for as URLs
        (named after its request id) once as old as a task's retention."""
        now = time.time() if now is None else now
        await self.blobs.sweep(SYNC_BLOBS, now - self.retention)
        expired = await self.repo.expired(now)
        for task in expired:
            if task.result is not None:
                await self._drop_blobs(task.result)
        await self.repo.remove([t.id for t in expired])
        return len(expired)

    async def stop(self) -> None:
        """Stop every run (their holds released, their leases given back for another process)."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        runners = list(self._running.values())
        for runner in runners:
            runner.cancel()
        for runner in runners:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner


def _usage(usage: Any) -> dict[str, int] | None:
    if usage is None:
        return None
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}

